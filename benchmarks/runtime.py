"""Runtime benchmark (issues 5, 15): overhead against a default ONNX Runtime session (steady and switching), switch
cost, ONNX Runtime threading modes (benchmarks/_threading.py), adherence under ramps of busy processes
(benchmarks/_adherence.py), recovery of the slowdown estimates after a storm of busy processes, memory.

Usage::

    python benchmarks/runtime.py --artifact resnet20.slim            # writes benchmarks/results/runtime.json
    python benchmarks/runtime.py                                     # synthetic artifact (flagged "synthetic": true,
                                                                     # written to a temp file unless --out is given)
    python benchmarks/runtime.py --sections overhead,threading --quick

Not a unit test: it measures and records; goals are evaluated into the JSON, never asserted. The machine's load
average is recorded before and after: numbers taken on a loaded machine say so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _adherence import bench_adherence_ramps, bench_recovery
from _common import command_line, median_us, rss_bytes, run_json_worker, write_results
from _common import random_input as _input
from _threading import bench_threading, thread_worker

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("overhead", "vs_default", "switch", "after_steady", "threading", "adherence", "recovery", "memory")


def _clock() -> int:
    return time.perf_counter_ns()


def build_synthetic(root: Path) -> Path:
    """A synthetic artifact sized so the sub-nets span ~0.1-1.5 ms on a 2-core CPU (4 nested widths)."""
    from slimrt.testing import build_synthetic_artifact

    accs = (91.0, 89.5, 86.0, 78.0)
    return build_synthetic_artifact(root, widths=(64, 40, 24, 12), accuracies=accs, spatial=32, depth=3)


def _bare_session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    from slimrt.backends.onnxrt import DEFAULT_THREADING, session_options

    return ort.InferenceSession(str(path), session_options(threads, DEFAULT_THREADING),
                                providers=["CPUExecutionProvider"])


def _default_session(path: Path, threads: int | None) -> Any:
    """What a user replaces with slimrt: a default InferenceSession (only the thread count set, if asked)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------------------- overhead


def bench_overhead(root: Path, threads: int | None, quick: bool) -> dict[str, Any]:
    """rt(x) vs a bare InferenceSession.run of the same file with the same options, paired and interleaved."""
    from slimrt import SlimRuntime
    from slimrt.artifact import resolve_inside

    out: dict[str, Any] = {}
    with SlimRuntime(root, budget_ms=1e6, threads=threads, measure_runs=20, measure_seconds=2.0) as rt:
        m = rt.manifest
        name = rt.active.name
        sess = _bare_session(resolve_inside(root, m.subnet(name).onnx.path), threads)
        outs, iname = [m.output.name], m.input.name
        batches = [1, 32] if m.dynamic_batch else [rt.batch_size]
        for b in batches:
            x = _input(m, b)
            for _ in range(20):
                rt(x)
                sess.run(outs, {iname: x})
            per_call_ms = max(rt.subnets[0].latency.p50_ms * b, 0.01)
            n = int(min(3000 if not quick else 800, max(30, (3.0 if not quick else 1.0) * 1e3 / per_call_ms / 2)))
            a, c = np.zeros(n, np.int64), np.zeros(n, np.int64)
            for i in range(n):
                if i % 2:
                    t0 = _clock()
                    rt(x)
                    t1 = _clock()
                    sess.run(outs, {iname: x})
                    t2 = _clock()
                    a[i], c[i] = t1 - t0, t2 - t1
                else:
                    t0 = _clock()
                    sess.run(outs, {iname: x})
                    t1 = _clock()
                    rt(x)
                    t2 = _clock()
                    c[i], a[i] = t1 - t0, t2 - t1
            rt_us, bare_us = median_us(a), median_us(c)
            added = float(np.median(a - c) / 1e3)
            out[f"batch_{b}"] = {
                "subnet": name, "calls": n, "rt_median_us": rt_us, "bare_median_us": bare_us,
                "ratio": rt_us / bare_us, "added_us_median_paired": added,
                "goal_met": rt_us / bare_us <= 1.03 or added < 15.0,
            }
    return out


# ----------------------------------------------------------------------------------------- vs a default session


VS_DEFAULT_MODES = ("nospin", "noclear", "steady", "spin")
_GAP_S = 0.05  # between blocks: an idle spinning ONNX Runtime worker spins ~40 ms of CPU after its last run


def _vs_default_kwargs(mode: str, steady_after: int) -> dict[str, Any]:
    """SlimRuntime arguments of a vs_default mode: ``steady`` (the runtime's default: nospin sessions, a clear
    session spinning during its runs only while the device is clear, and a spinning one for the sub-net in a steady
    run; ``steady:N`` with ``steady_after=N``), ``noclear`` (the default without clear sessions: the runtime before
    them), ``clear`` (nospin and clear sessions, no steady ones), ``nospin`` (nospin sessions only),
    ``spin``/``spinstop`` (every session with that threading; ``global``: one process-wide spinning pool shared by
    every sub-net), ``t1`` (nospin sessions with one intra-op thread: no pool to wake)."""
    if mode == "steady":
        return {"steady_after": steady_after}
    if mode.startswith("steady:") and mode[7:].isdigit():
        return {"steady_after": int(mode[7:])}
    if mode == "noclear":
        return {"steady_after": steady_after, "clear_sessions": False}
    if mode == "clear":
        return {"steady_after": None}
    if mode == "t1":
        return {"steady_after": None, "threads": 1, "clear_sessions": False}
    if mode in ("nospin", "spin", "spinstop", "global"):
        return {"steady_after": None, "backend_options": {"threading": mode}, "clear_sessions": False}
    raise ValueError(f"unknown vs_default mode {mode!r}; expected nospin, noclear, clear, steady, steady:N, spin, "
                     "spinstop, global or t1")


def bench_vs_default(root: Path, threads: int | None, quick: bool, modes: tuple[str, ...] = VS_DEFAULT_MODES,
                     steady_after: int = 64) -> dict[str, Any]:
    """rt(x) on the largest sub-net vs a *default* InferenceSession on the same file (issue 15).

    Blocks interleaved round by round (drift hits every kind alike), 50 ms apart (an idle spinning worker of the
    block before spins ~40 ms of CPU): a run of default-session calls, then per mode (one runtime each, see
    :func:`_vs_default_kwargs`) a run on the largest sub-net, both as long as any mode needs to reach its steady
    session (``steady_after + 16`` calls; the last 16 timed: ``default``, ``steady``), 10 timed calls on the
    smallest sub-net right after it (``after_steady_small``: what the spinning sub-net left behind costs), and the
    switch patterns of budget changes: largest/smallest alternating every call (``alternate_1``) and every 10 calls
    (``alternate_10``), the largest sub-net's calls timed and compared against the default session.
    """
    from contextlib import ExitStack

    from slimrt import SlimRuntime
    from slimrt.artifact import load_manifest, resolve_inside

    out: dict[str, Any] = {}
    with ExitStack() as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore")

        def open_rt(mode: str) -> SlimRuntime:
            return stack.enter_context(SlimRuntime(root, budget_ms=1e6, measure_runs=20, measure_seconds=2.0,
                                                   **{"threads": threads, **_vs_default_kwargs(mode, steady_after)}))

        # ONNX Runtime's global pool, once created, refuses every later session with a pool of its own: the default
        # session and the other modes' sessions (steady ones included) are opened first; those keep working
        m = load_manifest(root)
        ref = _default_session(resolve_inside(root, m.subnet(m.subnets[0].name).onnx.path), threads)
        rts = {mode: open_rt(mode) for mode in modes if mode != "global"}
        for rt in rts.values():
            if rt.steady_after is not None:
                rt.prepare_steady([m.subnets[0].name])  # built once, not part of steady-state timing
            rt.prepare_clear()  # every sub-net the switch patterns serve (none where the mode has no clear sessions)
        if "global" in modes:
            rts["global"] = open_rt("global")
        rts = {mode: rts[mode] for mode in modes}
        rt0 = next(iter(rts.values()))
        big = rt0.subnets[0]  # manifest order: the sub-net the default session runs
        small = min(rt0.subnets, key=lambda s: s.latency.p95_ms)
        outs, iname = [m.output.name], m.input.name
        batches = [1, 32] if m.dynamic_batch else [rt0.batch_size]
        for b in batches:
            x = _input(m, b)
            feeds = {iname: x}
            per_call_ms = max(big.latency.p50_ms * b, 0.01)
            small_ms = max(small.latency.p50_ms * b, 0.01)
            # every steady block (default session included) as long as the longest run any mode needs to reach its
            # steady session, its last `n_timed` calls timed (all on the steady session even for a run that starts
            # afresh): the same warm-up for every kind
            n_timed = 16
            run = max([n_timed + 2] + [(rt.steady_after or 0) + n_timed for rt in rts.values()])
            round_ms = (run * per_call_ms + 1e3 * _GAP_S * (1 + 3 * len(modes))
                        + len(modes) * ((run + 20) * per_call_ms + 30 * small_ms))
            blocks = int(min(150 if not quick else 40,
                             max(6, (15.0 if not quick else 3.0) * 1e3 * (1 + len(modes)) / round_ms)))
            kinds = ("steady", "after_steady_small", "alternate_1", "alternate_10")
            timed: dict[str, list[int]] = {"default": [], **{f"{md}/{k}": [] for md in modes for k in kinds}}
            for rt in rts.values():
                if rt.steady_after is not None:
                    rt.prepare_steady([big.name])  # built once, lazily in use: not part of steady-state timing
                rt.reset_stats()
                for _ in range(3):
                    ref.run(outs, feeds)
                    rt(x)
            b_big, b_small = 1e6, small.latency.p95_ms

            def call_rt(rt: SlimRuntime, budget: float, x: np.ndarray = x) -> int:
                rt.budget_ms = budget
                t0 = _clock()
                rt(x)
                return _clock() - t0

            for _ in range(blocks):  # one block of each kind per round: drift hits every kind alike
                time.sleep(_GAP_S)
                for j in range(run):
                    t0 = _clock()
                    ref.run(outs, feeds)
                    if j >= run - n_timed:
                        timed["default"].append(_clock() - t0)
                for md, rt in rts.items():
                    time.sleep(_GAP_S)
                    for j in range(run):
                        dt = call_rt(rt, b_big)
                        if j >= run - n_timed:
                            timed[f"{md}/steady"].append(dt)
                    for _ in range(10):  # right after the run: the sub-net left behind may still spin
                        timed[f"{md}/after_steady_small"].append(call_rt(rt, b_small))
                    time.sleep(_GAP_S)
                    for _ in range(10):  # big, small, big, small ...: the big calls are timed
                        timed[f"{md}/alternate_1"].append(call_rt(rt, b_big))
                        call_rt(rt, b_small)
                    time.sleep(_GAP_S)
                    for _ in range(10):  # 10 on the small sub-net, then 10 on the big one (big ones timed)
                        call_rt(rt, b_small)
                    timed[f"{md}/alternate_10"] += [call_rt(rt, b_big) for _ in range(10)]
            med = {k: median_us(v) for k, v in timed.items()}
            p95 = {k: float(np.percentile(v, 95) / 1e3) for k, v in timed.items()}
            res: dict[str, Any] = {"subnet": big.name, "blocks": blocks, "steady_block_calls": run,
                                   "steady_block_timed": n_timed, "steady_after": steady_after,
                                   "median_us": med, "p95_us": p95, "modes": {}}
            for md, rt in rts.items():
                st = rt.stats()
                r_steady, r_alt = med[f"{md}/steady"] / med["default"], med[f"{md}/alternate_1"] / med["default"]
                res["modes"][md] = {
                    "ratio_steady": r_steady, "ratio_alternate_every_call": r_alt,
                    "ratio_alternate_every_10": med[f"{md}/alternate_10"] / med["default"],
                    "goal_steady_met": r_steady <= 1.03, "goal_alternate_met": r_alt <= 1.15,
                    "steady_session_share": st.steady_calls / max(st.total_calls, 1),
                    "clear_session_share": st.clear_calls / max(st.total_calls, 1),
                    "after_steady_small_median_us": med[f"{md}/after_steady_small"],
                }
            out[f"batch_{b}"] = res
    return out


# ----------------------------------------------------------------------------------------- switch cost


def _switch_cost(names: tuple[str, str], switch_to: Any, call: Any, n: int) -> dict[str, Any]:
    """Median added time (us) of ``switch_to(name)`` + ``call()`` over a steady ``call()`` already on ``name``.

    ``n`` rounds of a steady pair on each target (untimed switch and call, then one timed call), then a switching
    pair (switch + call timed) to each. Returns the medians, the added time per target and the share of switches
    that landed on their target (``switch_to`` says whether it did).
    """
    steady: dict[str, list[int]] = {k: [] for k in names}
    switched: dict[str, list[int]] = {k: [] for k in names}
    on_target = 0
    for name in names:  # warm-up
        switch_to(name)
        for _ in range(20):
            call()
    for _ in range(n):
        for name in names:
            switch_to(name)
            call()
            t0 = _clock()
            call()
            steady[name].append(_clock() - t0)
        for name in reversed(names):
            t0 = _clock()
            hit = switch_to(name)
            call()
            switched[name].append(_clock() - t0)
            on_target += hit
    med_steady = {k: median_us(v) for k, v in steady.items()}
    med_switched = {k: median_us(v) for k, v in switched.items()}
    return {"steady_median_us": med_steady, "switch_median_us": med_switched,
            "added_us": {k: med_switched[k] - med_steady[k] for k in names}, "on_target": on_target / (len(names) * n)}


AFTER_STEADY_WINDOWS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 20), (21, 40))
"""Call ranges (1-based, inclusive) of the largest sub-net after a switch that :func:`bench_after_steady` reports."""


def bench_after_steady(root: Path, threads: int | None, quick: bool, run_calls: int = 300) -> dict[str, Any]:
    """What the first calls after a steady run cost: ``run_calls`` calls on the second-largest sub-net (its steady,
    spinning session serves them after ``steady_after``), then a budget that selects the largest, whose first 40
    calls are timed; median per call range over the repetitions. Once with the runtime's default steady sessions,
    once without (``steady_after=None``), repetitions alternated between two runtimes, 0.2 s apart (so a spinning
    pool has stopped before the other runtime runs). ONNX Runtime's spinning workers spin on after a run (2**20
    iterations of their worker loop) before they block, which is what the next session's calls would pay."""
    from slimrt import SlimRuntime

    reps = 4 if quick else 12
    windows = AFTER_STEADY_WINDOWS
    with SlimRuntime(root, budget_ms=1e6, threads=threads, adapt=False, measure_runs=20, measure_seconds=2.0) as a, \
            SlimRuntime(root, budget_ms=1e6, threads=threads, adapt=False, measure_runs=20, measure_seconds=2.0,
                        steady_after=None) as b, warnings.catch_warnings():  # fmt: skip
        warnings.simplefilter("ignore")
        big, small = a.subnets[0], a.subnets[1]
        x = _input(a.manifest, a.batch_size)
        a.prepare_steady([small.name])
        timed: dict[str, list[list[float]]] = {"default": [], "no_steady": []}
        steady_before = a.stats().steady_calls
        for _ in range(reps):
            for mode, rt in (("default", a), ("no_steady", b)):
                rt.budget_ms = (small.latency.p95_ms + big.latency.p95_ms) / 2  # the second fits, the largest not
                for _ in range(run_calls):
                    rt(x)
                rt.budget_ms = 1e6
                row = []
                for _ in range(windows[-1][1]):
                    t0 = _clock()
                    rt(x)
                    row.append((_clock() - t0) / 1e3)
                timed[mode].append(row)
                time.sleep(0.2)
        steady_calls = a.stats().steady_calls - steady_before
    med = {mode: {f"{lo}-{hi}" if hi > lo else str(lo): float(np.median(np.array(rows)[:, lo - 1:hi]))
                  for lo, hi in windows} for mode, rows in timed.items()}  # fmt: skip
    return {
        "big": big.name, "small": small.name, "run_calls": run_calls, "repetitions": reps,
        "steady_calls_of_default": steady_calls, "median_us": med,
        "ratio_default_over_no_steady": {k: med["default"][k] / med["no_steady"][k] for k in med["default"]},
    }


def bench_switch(root: Path, threads: int | None, quick: bool) -> dict[str, Any]:
    """Budget change + call vs a steady call on the same sub-net; vs creating a new session (naive app)."""
    from slimrt import SlimRuntime
    from slimrt.artifact import resolve_inside

    with SlimRuntime(root, budget_ms=1e6, threads=threads, measure_runs=20, measure_seconds=2.0) as rt, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small budget may turn infeasible under noise; the fastest still serves
        subs = rt.subnets
        big = subs[0]
        small = min(subs, key=lambda s: s.latency.p95_ms)  # the fastest: what a budget below all others selects
        b_big, b_small = 1e6, small.latency.p95_ms
        x = _input(rt.manifest, rt.batch_size)
        n = 300 if quick else 1000
        budgets = {big.name: b_big, small.name: b_small}

        def to_budget(name: str) -> bool:
            rt.budget_ms = budgets[name]
            return rt.active_name == name

        cost = _switch_cost((big.name, small.name), to_budget, lambda: rt(x), n)
        added = cost["added_us"]
        path = resolve_inside(root, rt.manifest.subnet(small.name).onnx.path)
        m = rt.manifest
        naive = []
        for _ in range(5 if quick else 10):
            t0 = _clock()
            s = _bare_session(path, threads)
            s.run([m.output.name], {m.input.name: x})
            naive.append(_clock() - t0)
            del s
        switches = rt.stats().switches
        # The same pattern on two bare sessions: what moving from one model's weights to another's costs the
        # hardware (cold caches) with no runtime in between.
        bare = {s.name: _bare_session(resolve_inside(root, m.subnet(s.name).onnx.path), threads) for s in (big, small)}
        feeds = {m.input.name: x}
        current = [big.name]

        def to_session(name: str) -> bool:
            current[0] = name
            return True

        bare_added = _switch_cost((big.name, small.name), to_session,
                                  lambda: bare[current[0]].run([m.output.name], feeds), n)["added_us"]
    mean_added = float(np.mean(list(added.values())))
    bare_mean = float(np.mean(list(bare_added.values())))
    return {
        "pairs": n, "big": big.name, "small": small.name,
        "steady_median_us": cost["steady_median_us"], "switch_median_us": cost["switch_median_us"],
        "added_us": added, "added_us_mean": mean_added, "switches_counted": switches,
        "switch_calls_on_target": cost["on_target"],
        "new_session_plus_call_median_us": median_us(naive),
        "bare_sessions_added_us": bare_added, "bare_sessions_added_us_mean": bare_mean,
        "runtime_share_of_added_us": mean_added - bare_mean,
        "goal_met": mean_added < 20.0,
    }


# ----------------------------------------------------------------------------------------- memory


def _mem_worker(which: str, root: str, threads: int | None) -> dict[str, Any]:
    import onnxruntime  # noqa: F401  (baseline includes the library)

    from slimrt.artifact import load_manifest

    m = load_manifest(root, verify=False)
    x = _input(m, 1)
    base = rss_bytes()
    if which in ("all", "all_thread_variants", "all_steady", "all_clear"):
        from slimrt import SlimRuntime

        counts = threads if which != "all_thread_variants" else ((threads, 1) if threads != 1 else (1, 2))
        rt = SlimRuntime(root, budget_ms=1e6, threads=counts, measure_runs=5, measure_seconds=0.5,
                         steady_after=8 if which == "all_steady" else None, clear_sessions=which == "all_clear")
        for s in rt.variants:
            rt.runner(s.name, s.threads).infer(x)
        if which == "all_steady":
            rt.prepare_steady()
        if which == "all_clear":
            rt.prepare_clear()
    else:
        from slimrt.artifact import resolve_inside

        subs = m.subnets if which == "all_bare" else m.subnets[:1]
        keep = [_bare_session(resolve_inside(root, s.onnx.path), threads) for s in subs]
        for sess in keep:
            sess.run([m.output.name], {m.input.name: x})
    return {"which": which, "rss_delta_bytes": rss_bytes() - base}


def _weight_bytes(root: Path) -> dict[str, Any]:
    import onnx

    from slimrt.artifact import load_manifest, resolve_inside

    m = load_manifest(root, verify=False)
    per: dict[str, int] = {}
    for s in m.subnets:
        model = onnx.load(str(resolve_inside(root, s.onnx.path)), load_external_data=False)
        total = 0
        for t in model.graph.initializer:
            ext = {e.key: e.value for e in t.external_data}
            total += int(ext["length"]) if "length" in ext else len(t.raw_data) or 4 * math.prod(t.dims)
        per[s.name] = total
    return {"per_subnet": per, "sum": sum(per.values()), "weights_file": m.weights.bytes}


def bench_memory(root: Path, threads: int | None) -> dict[str, Any]:
    res = {}
    for which in ("full", "all_bare", "all", "all_thread_variants", "all_steady", "all_clear"):
        vals = []
        for _ in range(2):
            args = [__file__, "--_mem-worker", which, str(root), str(threads or 0)]
            vals.append(run_json_worker(args)["rss_delta_bytes"])
        res[which] = int(np.median(vals))
    wb = _weight_bytes(root)
    return {"rss_all_subnets_bytes": res["all"], "rss_full_alone_bytes": res["full"],
            "rss_all_bare_sessions_bytes": res["all_bare"],
            "rss_all_with_thread_variants_bytes": res["all_thread_variants"],
            "thread_variants_extra_bytes": res["all_thread_variants"] - res["all"],
            "rss_all_with_steady_sessions_bytes": res["all_steady"],
            "steady_sessions_extra_bytes": res["all_steady"] - res["all"],
            "rss_all_with_clear_sessions_bytes": res["all_clear"],
            "clear_sessions_extra_bytes": res["all_clear"] - res["all"],
            "note": "RSS growth after loading: 'all' = SlimRuntime (every sub-net + runtime), 'all_bare' = one plain "
                    "session per sub-net, 'full' = one plain session of the largest sub-net",
            "all_over_full": res["all"] / max(res["full"], 1), "weight_bytes": wb,
            "all_over_weight_sum": res["all"] / max(wb["sum"], 1)}


# ----------------------------------------------------------------------------------------- main


def _table(result: dict[str, Any]) -> str:
    rows = ["| measure | value | goal |", "|---|---|---|"]
    s = result["sections"]
    for k, v in s.get("overhead", {}).items():
        met = "met" if v["goal_met"] else "MISSED"
        rows.append(f"| overhead {k} ({v['subnet']}) | ratio {v['ratio']:.3f}, +{v['added_us_median_paired']:.1f} us "
                    f"(bare {v['bare_median_us']:.0f} us) | <= 1.03 or < 15 us: {met} |")
    if "switch" in s:
        v = s["switch"]
        rows.append(f"| switch cost | +{v['added_us_mean']:.1f} us (two bare sessions alternating: "
                    f"+{v['bare_sessions_added_us_mean']:.1f} us; new session + call: "
                    f"{v['new_session_plus_call_median_us'] / 1e3:.1f} ms) | < 20 us: "
                    f"{'met' if v['goal_met'] else 'MISSED'} |")
    if "after_steady" in s:
        v = s["after_steady"]
        r = v["ratio_default_over_no_steady"]
        rows.append(f"| {v['big']} after {v['run_calls']} calls on {v['small']}: default / without steady sessions "
                    f"| calls 1-5 {', '.join(f'{r[k]:.2f}' for k in ('1', '2', '3', '4', '5'))}x; 6-20 "
                    f"{r['6-20']:.2f}x; 21-40 {r['21-40']:.2f}x | |")
    if "threading" in s:
        for mode, v in s["threading"]["modes"].items():
            rows.append(f"| threading {mode} | alternating/steady worst {v['worst_ratio']:.2f}x, alternating vs spin "
                        f"steady {v['mean_alternating_vs_spin_steady']:.2f}x | chosen: {s['threading']['chosen']} |")
    for k, v in s.get("vs_default", {}).items():
        for md, r in v["modes"].items():
            rows.append(f"| vs default session {k} ({v['subnet']}, {md}; default {v['median_us']['default']:.0f} us) "
                        f"| steady {r['ratio_steady']:.3f}x, alternate every call "
                        f"{r['ratio_alternate_every_call']:.3f}x, every 10 {r['ratio_alternate_every_10']:.3f}x | "
                        "<= 1.03 / <= 1.15 |")
    if "adherence" in s:
        v = s["adherence"]
        for pname, pv in v["patterns"].items():
            for name, r in pv["strategies"].items():
                ph = r.get("phases", [])
                miss = sum(p.get("misses", 0) for p in ph)
                hard = sum(p.get("misses_no_pair_absorbs", 0) for p in ph)
                rows.append(f"| adherence {pname} {name} @ {v['budget_ms']:.2f} ms | {100 * r['within_budget']:.1f}% "
                            f"within ({miss} misses, {hard} no pair absorbs), mean acc {r['mean_accuracy']:.2f} | "
                            ">= 99% and >= 99% of oracle acc |")
            rows.append(f"| adherence {pname} oracle per phase | {', '.join(pv['oracle_best_per_phase'])} | |")
    if "recovery" in s:
        v = s["recovery"]
        rows.append(f"| recovery after {v['storm_s']:.0f} s of {v['storm_procs']} busy processes | "
                    f"every estimate <= 1.1 after {v['calls_to_clear']} calls, first <= 1.1 after "
                    f"{v['calls_to_first_clear']} (control trials without a storm: {v['control_calls_to_clear']}) | "
                    f"<= 200 calls: {'met' if v['goal_clear_within_200_calls'] else 'MISSED'} |")
        if "calls_to_track" in v:
            rows.append("| recovery: served estimate within 10% of what the device did next (its estimator on the next "
                        f"32 calls) from call | {v['calls_to_track']} | <= 200 calls: "
                        f"{'met' if v['tracks_within_200_calls'] else 'MISSED'} |")
        if v.get("calls_to_quiet_choice"):
            share = ", ".join(f"{100 * x:.0f}%" for x in v["quiet_choice_share"])
            ctrl = ", ".join(f"{100 * x:.0f}%" for x in v["control_quiet_choice_share"])
            rows.append(f"| recovery: first post-storm call serving the quiet choice's accuracy "
                        f"({v['quiet_accuracy']}) | {v['calls_to_quiet_choice']}; share of post-storm calls at it "
                        f"{share} (controls {ctrl}) | |")
    if "memory" in s:
        v = s["memory"]
        rows.append(f"| memory | all {v['rss_all_subnets_bytes'] / 2**20:.1f} MiB (with a 2nd thread count "
                    f"{v['rss_all_with_thread_variants_bytes'] / 2**20:.1f} MiB, with every steady session "
                    f"{v['rss_all_with_steady_sessions_bytes'] / 2**20:.1f} MiB) vs full alone "
                    f"{v['rss_full_alone_bytes'] / 2**20:.1f} MiB; weight sum {v['weight_bytes']['sum'] / 2**20:.2f} "
                    "MiB | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", type=Path, help="artifact directory (default: build a synthetic one)")
    p.add_argument("--out", type=Path, help="results JSON (default: benchmarks/results/runtime.json for a real "
                   "artifact, a temp file for the synthetic one)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {SECTIONS}")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: ONNX Runtime's)")
    p.add_argument("--budget-ms", type=float, default=None, help="adherence budget (default: 1.5 x full p95 idle)")
    p.add_argument("--quantile", type=float, default=0.95,
                   help="adherence: latency quantile every strategy fits into the budget (SlimRuntime(quantile=...); "
                        "0.99 for a 99%%-within-budget goal)")
    p.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    p.add_argument("--vs-default-modes", default=",".join(VS_DEFAULT_MODES),
                   help="comma list of vs_default runtime modes: steady (the runtime's default), noclear (the "
                        "default without clear sessions), clear, nospin, steady:N, spin, spinstop, t1, global (one "
                        "process-wide pool: opened last)")
    p.add_argument("--steady-after", type=int, default=None,
                   help="steady_after of the vs_default mode 'steady' (default: the runtime's default)")
    p.add_argument("--clear-slowdown", type=float, default=None,
                   help="adherence and recovery: AdaptConfig.clear_slowdown, the estimate at or below which the "
                        "device counts as quiet (a storm's step-up backoff is forgotten after a window of such "
                        "calls); 'inf' gives the runtime before that rule (every backoff kept). Default: the "
                        "runtime's (1.1)")
    p.add_argument("--no-clear-sessions", action="store_true",
                   help="adherence and recovery: the adaptive runtime without clear sessions "
                        "(SlimRuntime(clear_sessions=False), the runtime before them). Note that --clear-slowdown inf "
                        "also keeps clear sessions serving under contention")
    p.add_argument("--_thread-worker", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--_mem-worker", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._thread_worker:
        mode, root, thr, budget = a._thread_worker
        print(json.dumps(thread_worker(mode, root, int(thr) or None, float(budget))))
        return 0
    if a._mem_worker:
        which, root, thr = a._mem_worker
        print(json.dumps(_mem_worker(which, root, int(thr) or None)))
        return 0

    sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    bad = set(sections) - set(SECTIONS)
    if bad:
        p.error(f"unknown sections {sorted(bad)}")
    vs_modes = tuple(md.strip() for md in a.vs_default_modes.split(",") if md.strip())
    if "vs_default" in sections and sections[-1] != "vs_default" and "global" in vs_modes:
        p.error("vs_default mode 'global' creates ONNX Runtime's process-wide pool, after which no section can open "
                "sessions of its own: put vs_default last in --sections")
    tmp = None
    synthetic = a.artifact is None
    if synthetic:
        tmp = tempfile.TemporaryDirectory(prefix="slimrt-bench-")
        root = build_synthetic(Path(tmp.name) / "synthetic.slim")
    else:
        root = a.artifact
    from slimrt.artifact import verify_artifact
    from slimrt.fingerprint import device_fingerprint

    manifest = verify_artifact(root)
    import onnxruntime

    fp = device_fingerprint("onnxruntime", ["CPUExecutionProvider"], a.threads, "fp32", 1)
    result: dict[str, Any] = {
        "synthetic": synthetic, "artifact": "synthetic (slimrt.testing)" if synthetic else str(root),
        "arch": manifest.arch, "subnets": [s.name for s in manifest.subnets],
        "command": command_line("runtime.py", argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__, "device": fp.model_dump(), "quick": a.quick,
        "loadavg_start": list(os.getloadavg()), "sections": {},
    }
    t_start = time.perf_counter()
    for sec in sections:
        t0 = time.perf_counter()
        print(f"[runtime bench] {sec} ...", file=sys.stderr, flush=True)
        if sec == "overhead":
            r = bench_overhead(root, a.threads, a.quick)
        elif sec == "switch":
            r = bench_switch(root, a.threads, a.quick)
        elif sec == "after_steady":
            r = bench_after_steady(root, a.threads, a.quick)
        elif sec == "threading":
            r = bench_threading(root, a.threads, a.quick)
        elif sec == "vs_default":
            from slimrt.runtime.runtime import DEFAULT_STEADY_AFTER

            r = bench_vs_default(root, a.threads, a.quick, vs_modes, a.steady_after or DEFAULT_STEADY_AFTER or 64)
        elif sec == "adherence":
            r = bench_adherence_ramps(root, a.threads, a.quick, a.budget_ms, quantile=a.quantile,
                                      clear_slowdown=a.clear_slowdown, clear_sessions=not a.no_clear_sessions)
        elif sec == "recovery":
            r = bench_recovery(root, a.threads, a.quick, a.budget_ms, clear_slowdown=a.clear_slowdown,
                               clear_sessions=not a.no_clear_sessions)
        else:
            r = bench_memory(root, a.threads)
        result["sections"][sec] = r
        result.setdefault("section_seconds", {})[sec] = round(time.perf_counter() - t0, 1)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["loadavg_end"] = list(os.getloadavg())
    result["note"] = ("measured on a machine with load average {:.1f} at the start and {:.1f} at the end for {} cores: "
                      "above the core count, every timing here is contended".format(
                          result["loadavg_start"][0], result["loadavg_end"][0], os.cpu_count()))
    out = a.out or (Path(tempfile.gettempdir()) / "slimrt-runtime-synthetic.json" if synthetic
                    else REPO / "benchmarks/results/runtime.json")
    write_results(out, result)
    print(_table(result))
    print(f"wrote {out} ({result['seconds']} s)")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
