"""Latency of uniform-width families of ResNet-18 and MobileNetV2 at 3x224x224 on this CPU (ONNX Runtime).

What can the runtime trade on a network of the size people deploy? For each architecture (random weights: latency
only), every uniform width (each channel group keeps ``ceil(width * C)`` channels, rounded up to a multiple of 8, as
``DynamicNet.uniform_spec``) is extracted and exported with the project's exporter (``export_module``, dynamic batch),
opened with ONNX Runtime's CPU provider and measured with the ``cpu`` device profile's protocol (warm-up, timed
rounds, duration bound, threads) by the runtime's interleaved ``measure_latency``: each round calls every width once
in rotating order, so drift and background load hit all widths alike. Batch 1 and batch 8 are measured separately.

Usage::

    python benchmarks/families.py                  # writes benchmarks/results/families-224.json, prints a table
    python benchmarks/families.py --quick          # 3 widths, short measurement (a smoke run)
    python benchmarks/families.py --threads 2 --note "quiet machine"
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "families-224.json"
ARCHS = {"resnet18": {"small_input": False}, "mobilenet_v2": {"small_input": False}}
"""Architectures of the zoo and their options for 224 px inputs (ImageNet stems: stride-2 conv, no small-input)."""
WIDTHS = (1.0, 0.75, 0.5, 0.35, 0.25)
QUICK_WIDTHS = (1.0, 0.5, 0.25)
BATCHES = (1, 8)
INPUT = (3, 224, 224)

__all__ = ["measure_family", "markdown_table", "main"]


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10,
                             check=False).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def measure_family(arch: str, widths: list[float], batches: list[int], threads: int | None, warmup: int, runs: int,
                   duration_s: float | None, tmp: Path, seed: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """One row per width: MACs and params per image, and p50/p95/cv/runs at every batch size (interleaved)."""
    import numpy as np
    import onnx
    import torch

    from slimrt.backends import create_runner
    from slimrt.backends.base import RunnerOptions
    from slimrt.bench import speedups
    from slimrt.exporters.onnx import export_module
    from slimrt.models import create_model
    from slimrt.runtime.measure import measure_latency
    from slimrt.train.dynamic import DynamicNet

    torch.manual_seed(seed)
    example = torch.zeros(1, *INPUT)
    net = DynamicNet(create_model(arch, in_channels=INPUT[0], num_classes=1000, **ARCHS.get(arch, {})), example)
    net.eval()
    specs = [net.uniform_spec(w, f"w{w:g}", round_to=8) for w in widths]
    runners = {}
    try:
        for s in specs:
            path = tmp / f"{arch}-{s.name}.onnx"
            onnx.save(export_module(net.extract(s).eval(), example, dynamic_batch=True), path)
            runners[s.name] = create_runner("onnxruntime", path, RunnerOptions(device="cpu", threads=threads))
        rows = [{"arch": arch, "width": w, "name": s.name, "macs": s.macs, "params": s.params, "batches": {}}
                for w, s in zip(widths, specs, strict=True)]  # fmt: skip
        for b in batches:
            x = np.random.default_rng(seed).standard_normal((b, *INPUT)).astype(np.float32)
            t0 = time.perf_counter()
            lat = measure_latency(runners, x, warmup=warmup, runs=runs, duration_s=duration_s)
            seconds = time.perf_counter() - t0
            full = specs[0].name
            up = speedups(lat, full)
            for r in rows:
                v = lat[r["name"]]
                r["batches"][str(b)] = {"p50_ms": v.p50_ms, "p95_ms": v.p95_ms, "mean_ms": v.mean_ms, "cv": v.cv,
                                        "runs": v.runs, "speedup_p50": up[r["name"]],
                                        "images_per_s": 1e3 * b / v.p50_ms}  # fmt: skip
            print(f"  {arch} batch {b}: {len(specs)} widths measured in {seconds:.0f} s", flush=True)
    finally:
        for r in runners.values():
            r.close()
    return rows


def markdown_table(rows: list[dict[str, Any]], batches: list[int]) -> str:
    """The results as a markdown table: MACs, params, p50/p95 and speed-up vs width 1.0 at every batch size."""
    head = ["arch", "width", "MMACs", "params (M)"]
    for b in batches:
        head += [f"b{b} p50 ms", f"b{b} p95 ms", f"b{b} speed-up"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in rows:
        cells = [r["arch"], f"{r['width']:g}", f"{r['macs'] / 1e6:,.0f}", f"{r['params'] / 1e6:.2f}"]
        for b in batches:
            m = r["batches"][str(b)]
            cells += [f"{m['p50_ms']:.1f}", f"{m['p95_ms']:.1f}", f"{m['speedup_p50']:.2f}x"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default=",".join(ARCHS), help="comma-separated zoo names (default: %(default)s)")
    p.add_argument("--widths", default=None, help="comma-separated width ratios, 1.0 first (default "
                   f"{','.join(map(str, WIDTHS))})")  # fmt: skip
    p.add_argument("--quick", action="store_true", help=f"widths {QUICK_WIDTHS}, 3 warm-up and 20 timed rounds, 10 s")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: the cpu "
                   "profile's; unset lets ONNX Runtime use one per physical core)")  # fmt: skip
    p.add_argument("--runs", type=int, default=None, help="timed rounds (default: the cpu profile's)")
    p.add_argument("--note", default="", help="recorded in the JSON (e.g. 'machine loaded by other runs')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    from slimrt.bench import load_device_profile
    from slimrt.fingerprint import cpu_model, package_version

    prof = load_device_profile("cpu")
    widths = [float(v) for v in args.widths.split(",")] if args.widths else list(QUICK_WIDTHS if args.quick else WIDTHS)
    if not widths or any(not 0 < w <= 1 for w in widths) or widths[0] != 1.0:
        p.error(f"--widths must start with 1.0 (the reference) and lie in (0, 1], got {widths}")
    threads = args.threads if args.threads is not None else prof.threads
    warmup = 3 if args.quick else prof.warmup
    runs = args.runs or (20 if args.quick else prof.runs)
    duration = 10.0 if args.quick else prof.duration_s
    batches = list(BATCHES)
    load_before = list(os.getloadavg())
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as d:
        for arch in args.archs.split(","):
            rows += measure_family(arch.strip(), widths, batches, threads, warmup, runs, duration, Path(d), args.seed)
    result = {
        "command": command_line("families.py", argv),
        "commit": _commit(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_before": load_before,
                    "load_avg_after": list(os.getloadavg()), "note": args.note},  # fmt: skip
        "onnxruntime": package_version("onnxruntime"),
        "input": list(INPUT),
        "protocol": {"device_profile": prof.name, "threads": threads, "warmup": warmup, "runs": runs,
                     "duration_s": duration, "interleaved": True, "weights": "random (latency only)",
                     "width_rounding": "ceil(width * C) rounded up to a multiple of 8 per channel group"},  # fmt: skip
        "batches": batches,
        "seconds": time.perf_counter() - t0,
        "rows": rows,
        "range": {f"{a}/b{b}": _range(rows, a, b) for a in {r["arch"] for r in rows} for b in batches},
    }
    write_results(args.out, result)
    print(markdown_table(rows, batches))
    print(f"-> {args.out} ({result['seconds']:.0f} s; load {load_before} -> {result['machine']['load_avg_after']})")
    return result


def _range(rows: list[dict[str, Any]], arch: str, batch: int) -> dict[str, float]:
    """Fastest and slowest p50 of one family at one batch size, and their ratio (what the runtime can trade)."""
    p50 = [r["batches"][str(batch)]["p50_ms"] for r in rows if r["arch"] == arch]
    return {"min_p50_ms": min(p50), "max_p50_ms": max(p50), "ratio": max(p50) / min(p50) if min(p50) else math.nan}


if __name__ == "__main__":
    main()
