"""Threading section of ``benchmarks/runtime.py``: ONNX Runtime's per-session spinning pools vs spinning off vs
one global pool, measured as steady vs alternating (round-robin over sub-nets) calls, each mode in fresh processes.

The worker runs as ``python benchmarks/runtime.py --_thread-worker ...`` (see :func:`thread_worker`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import median_us, run_json_worker
from _common import random_input as _input

SCRIPT = Path(__file__).with_name("runtime.py")
MODES = ("spin", "spinstop", "nospin", "global")


def _clock() -> int:
    return time.perf_counter_ns()


def thread_worker(mode: str, root: str, threads: int | None, budget_s: float) -> dict[str, Any]:
    """(In a fresh process) steady vs alternating calls over every sub-net's session under ``mode``."""
    import onnxruntime as ort

    from slimrt.artifact import load_manifest, resolve_inside
    from slimrt.backends.onnxrt import session_options

    m = load_manifest(root, verify=False)
    names = [s.name for s in m.subnets]
    sess = {s.name: ort.InferenceSession(str(resolve_inside(root, s.onnx.path)), session_options(threads, mode),
                                         providers=["CPUExecutionProvider"]) for s in m.subnets}
    x = _input(m, 1)
    feeds, outs = {m.input.name: x}, [m.output.name]
    for _ in range(10):
        for n in names:
            sess[n].run(outs, feeds)
    t0 = _clock()
    for n in names:
        sess[n].run(outs, feeds)
    round_s = max((_clock() - t0) / 1e9, 1e-5)
    reps = int(max(30, min(400, budget_s / 2 / round_s)))
    steady: dict[str, list[int]] = {n: [] for n in names}
    alt: dict[str, list[int]] = {n: [] for n in names}
    for n in names:
        for _ in range(reps):
            t = _clock()
            sess[n].run(outs, feeds)
            steady[n].append(_clock() - t)
    for _ in range(reps):
        for n in names:
            t = _clock()
            sess[n].run(outs, feeds)
            alt[n].append(_clock() - t)
    return {"mode": mode, "reps": reps, "steady_us": {n: median_us(v) for n, v in steady.items()},
            "alternating_us": {n: median_us(v) for n, v in alt.items()}}


def bench_threading(root: Path, threads: int | None, quick: bool) -> dict[str, Any]:
    """Per-session spinning pools (ORT default) vs spinning off vs one global pool, each in fresh processes."""
    rounds = 2 if quick else 3
    budget_s = 2.0 if quick else 4.0
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:  # interleave modes across rounds so machine drift hits all alike
            args = [str(SCRIPT), "--_thread-worker", mode, str(root), str(threads or 0), str(budget_s)]
            runs[mode].append(run_json_worker(args))
    names = list(runs["spin"][0]["steady_us"])
    summary: dict[str, Any] = {}
    for mode in MODES:
        steady = {n: float(np.median([r["steady_us"][n] for r in runs[mode]])) for n in names}
        alt = {n: float(np.median([r["alternating_us"][n] for r in runs[mode]])) for n in names}
        summary[mode] = {
            "steady_us": steady, "alternating_us": alt,
            "alternating_over_steady": {n: alt[n] / steady[n] for n in names},
            "worst_ratio": max(alt[n] / steady[n] for n in names),
        }
    spin_steady = summary["spin"]["steady_us"]
    for mode in MODES:
        s = summary[mode]
        s["alternating_vs_spin_steady"] = {n: s["alternating_us"][n] / spin_steady[n] for n in names}
        s["steady_vs_spin_steady"] = {n: s["steady_us"][n] / spin_steady[n] for n in names}  # spin = ORT default
        s["mean_alternating_vs_spin_steady"] = float(np.mean(list(s["alternating_vs_spin_steady"].values())))
    return {"rounds": rounds, "threads": threads, "modes": summary, "raw": runs,
            "chosen": _chosen_mode(), "note": "alternating = round-robin over every sub-net's session (what "
            "switching sub-nets does); ratios > 1 mean switching costs time"}


def _chosen_mode() -> str:
    from slimrt.backends.onnxrt import DEFAULT_THREADING

    return DEFAULT_THREADING
