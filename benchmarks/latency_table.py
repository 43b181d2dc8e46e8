"""Latency-table predictor error against end-to-end measurement on random sub-nets of ResNet-20 (1x28x28).

Measures the latency table of ResNet-20 with ONNX Runtime (the ``cpu`` device profile's settings unless overridden),
draws ``--subnets`` random sub-nets (every prunable group's width uniform on its unit grid), exports each extracted
sub-net as deployed (``export_module``) and measures all of them interleaved with ``measure_latency``; reports the
relative error of the predicted p50 against the measured p50 (median and max). Records the machine and its load
average: on a shared machine the numbers include that noise.

Usage::

    python benchmarks/latency_table.py                # writes benchmarks/results/latency-table-resnet20.json
    python benchmarks/latency_table.py --score-table T.json ...   # also score stored tables on the same sub-nets
    python benchmarks/latency_table.py --rescore RESULT.json --score-table T.json   # no measurement: add to RESULT
    python benchmarks/latency_table.py --calibrate 16 --fit best   # also the table refitted on 16 whole networks

A stored table (``--score-table``, e.g. the one a search used) was measured at another time, so it is scored
relative to the full network (:func:`ratio_errors`), which cancels a drift shared by every measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, random_unit_grid_widths, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "latency-table-resnet20.json"


def ratio_errors(rows: list[dict]) -> dict:
    """Error of predicted latency *relative to the full network* (pred/pred_full vs measured/measured_full, both
    from the same end-to-end session): what the search uses, insensitive to the machine drifting between the
    table's measurement and the end-to-end one."""
    full = next(r for r in rows if r["name"] == "full")
    errs = [abs((r["predicted_ms"] / full["predicted_ms"]) / (r["measured_p50_ms"] / full["measured_p50_ms"]) - 1)
            for r in rows if r["name"] != "full"]  # fmt: skip
    return {"median_rel_error": statistics.median(errs), "max_rel_error": max(errs),
            "note": "pred/pred_full vs measured/measured_full"}


def resnet20():
    """The benchmark's network: ResNet-20 on 1x28x28 inputs, as a DynamicNet."""
    import torch

    from slimrt.models.registry import create_model
    from slimrt.train.dynamic import DynamicNet

    return DynamicNet(create_model("resnet20", in_channels=1, num_classes=10), torch.zeros(1, 1, 28, 28))


def score_tables(rows: list[dict], tables: list[Path], net=None) -> dict[str, dict]:
    """Each stored latency table's prediction for the measured ``rows`` (sub-nets of ``net``, default
    :func:`resnet20`), scored relative to the full network (:func:`ratio_errors`), keyed by file name."""
    from slimrt.train.latency import LatencyPredictor, load_latency_table

    net = net if net is not None else resnet20()
    out = {}
    for path in tables:
        pred = LatencyPredictor(net, load_latency_table(path))
        scored = [{**r, "predicted_ms": pred.ms(net.spec(r["widths"]))} for r in rows]
        out[path.name] = {**ratio_errors(scored), "subnets": len(rows) - 1}
    return out


def rescore(result: Path, tables: list[Path], command: str) -> dict:
    """Add ``tables``' scores on the sub-nets ``result`` measured to that file (no new measurement)."""
    import json

    data = json.loads(result.read_text())
    data.setdefault("stored_tables", {}).update(score_tables(data["rows"], tables))
    data.setdefault("rescored_by", []).append(command)
    write_results(result, data)
    return data


def _print_stored(result: dict) -> None:
    for name, e in result.get("stored_tables", {}).items():
        print(f"stored table {name}, relative to the full network: median {100 * e['median_rel_error']:.1f}%  "
              f"max {100 * e['max_rel_error']:.1f}%")  # fmt: skip


def full_spread(rows: list[dict]) -> dict:
    """The full network's p50 over the beside-full pairs: how far one network's latency moves between measurements
    seconds apart on this machine (the noise floor under the predictor's error)."""
    v = [r["beside_full"]["full_p50_ms"] for r in rows if "beside_full" in r]
    return {"min_ms": min(v), "median_ms": statistics.median(v), "max_ms": max(v), "max_over_min": max(v) / min(v)}


def calibrated_scores(rows: list[dict], table: Any, pred: dict[str, float], args: argparse.Namespace,
                      seconds: float) -> dict:  # fmt: skip
    """The calibrated ``table``'s errors (its predictions ``pred`` by sub-net name) on the measured ``rows``
    (absolute, and relative to the full network of the same measurement), with the fit it kept; ``rows`` are the
    random sub-nets the table measured here is judged on."""
    scored = [{**r, "predicted_ms": pred[r["name"]]} for r in rows]
    errs = [abs(pred[r["name"]] / r["measured_p50_ms"] - 1) for r in rows if r["name"] != "full"]
    return {"networks": table.fit["networks"] if table.fit else 0, "requested": args.calibrate, "fit_asked": args.fit,
            "fit": table.fit or {"kind": "none (every fit failed: the two-point calibration is kept)"},
            "seconds": seconds, "median_rel_error": statistics.median(errs), "max_rel_error": max(errs),
            "relative_to_full": ratio_errors(scored), "predicted_ms": pred,
            "table": json.loads(table.model_dump_json())}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subnets", type=int, default=24, metavar="N",
                   help="random sub-nets judged (default 24; the issue asks for at least 20)")
    p.add_argument("--runs", type=int, default=None, help="timed rounds (default: the device profile's)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="ONNX Runtime intra-op threads (default: ONNX Runtime's)")
    p.add_argument("--seed", type=int, default=0, help="draws the random sub-nets (default 0)")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="results JSON (default benchmarks/results/latency-table-resnet20.json)")
    p.add_argument("--score-table", type=Path, action="append", default=[], metavar="TABLE",
                   help="a stored latency table (JSON) to score on the same sub-nets, relative to the full network")
    p.add_argument("--calibrate", type=int, default=0, metavar="N",
                   help="also refit the table measured here on N whole networks measured end to end in the same "
                        "window (as slimrt latency-table --calibrate N: never the random sub-nets judged) and score "
                        "it on the same sub-nets ('calibrated' in the results)")
    p.add_argument("--fit", default="best", help="how --calibrate refits: align, stages or best (default best)")
    p.add_argument("--rescore", type=Path, default=None, metavar="RESULT",
                   help="no measurement: score the --score-table tables on the sub-nets of this results file")
    args = p.parse_args(argv)
    from slimrt.cli.latency_table import FITS

    if args.calibrate < 0:
        p.error(f"--calibrate must be >= 0, got {args.calibrate}")
    if args.fit not in FITS:
        p.error(f"--fit must be one of {', '.join(FITS)}, got {args.fit!r}")
    for t in args.score_table:
        if not t.is_file():
            p.error(f"--score-table {t}: no such file")
    if args.rescore is not None:
        if not args.score_table:
            p.error("--rescore needs at least one --score-table")
        if not args.rescore.is_file():
            p.error(f"--rescore {args.rescore}: no such file")
        result = rescore(args.rescore, args.score_table, command_line("latency_table.py", argv))
        _print_stored(result)
        return result

    import numpy as np
    import onnx
    import torch

    from slimrt.bench import load_device_profile
    from slimrt.bench.layers import _runner
    from slimrt.cli.latency_table import _calibrate, measure_net_table
    from slimrt.exporters.onnx import export_module
    from slimrt.fingerprint import cpu_model
    from slimrt.runtime.measure import measure_latency

    torch.manual_seed(args.seed)
    load_before = list(os.getloadavg())
    prof = load_device_profile("cpu")
    net = resnet20()
    t0 = time.perf_counter()
    table = measure_net_table(net, prof, threads=args.threads, runs=args.runs)
    t_table = time.perf_counter() - t0
    calibrated = t_cal = None
    if args.calibrate:
        t0 = time.perf_counter()
        kw = {"threads": args.threads, "runs": args.runs}
        calibrated = _calibrate(net, table, prof, args.calibrate, 8, 4, kw, args.fit)
        t_cal = time.perf_counter() - t0

    specs = [net.full_spec("full")]
    draws = random_unit_grid_widths(net, args.subnets, args.seed)
    specs += [net.spec(w, name=f"r{i:02d}") for i, w in enumerate(draws)]
    t0 = time.perf_counter()
    runners = {}
    with tempfile.TemporaryDirectory() as d:
        for s in specs:
            path = Path(d) / f"{s.name}.onnx"
            onnx.save(export_module(net.extract(s), torch.zeros(1, 1, 28, 28)), path)
            runners[s.name] = _runner(path, args.threads if args.threads is not None else prof.threads)
        x = np.random.default_rng(1).standard_normal((1, 1, 28, 28)).astype(np.float32)
        n_runs = args.runs or prof.runs
        lat = measure_latency(runners, x, warmup=prof.warmup, runs=n_runs, duration_s=None)
        # the table's own protocol: each sub-net interleaved with the full network only (a run of calls on few
        # sessions, as the runtime serves), instead of all sub-nets round-robin (every call on cold caches)
        beside = {s.name: measure_latency({"full": runners["full"], s.name: runners[s.name]}, x, warmup=prof.warmup,
                                          runs=n_runs, duration_s=None)
                  for s in specs if s.name != "full"}  # fmt: skip
        for r in runners.values():
            r.close()
    t_e2e = time.perf_counter() - t0
    rows = []
    for s in specs:
        pred = table.predict_ms(net.widths(s))
        meas = lat[s.name].p50_ms
        rows.append({"name": s.name, "widths": s.widths, "macs": s.macs, "predicted_ms": pred, "measured_p50_ms": meas,
                     "cv": lat[s.name].cv, "rel_error": (pred - meas) / meas})  # fmt: skip
    errs = [abs(r["rel_error"]) for r in rows if r["name"] != "full"]
    ratio = ratio_errors(rows)
    for r in rows:
        if r["name"] != "full":
            b = beside[r["name"]]
            r["beside_full"] = {"measured_p50_ms": b[r["name"]].p50_ms, "full_p50_ms": b["full"].p50_ms,
                                "rel_error": (r["predicted_ms"] - b[r["name"]].p50_ms) / b[r["name"]].p50_ms}
    b_errs = [abs(r["beside_full"]["rel_error"]) for r in rows if r["name"] != "full"]
    b_ratio = [abs((r["predicted_ms"] / rows[0]["predicted_ms"])
                   / (r["beside_full"]["measured_p50_ms"] / r["beside_full"]["full_p50_ms"]) - 1)
               for r in rows if r["name"] != "full"]  # fmt: skip
    result = {
        "command": command_line("latency_table.py", argv),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_avg_before": load_before,
                    "load_avg_after": list(os.getloadavg()),
                    "note": "shared machine (other engineers, a training benchmark): timings include that noise"},
        "threads": args.threads if args.threads is not None else prof.threads,
        "runs": args.runs or prof.runs,
        "table": {"parts": len(table.parts), "layers": len(table.layers), "measurements": table.measurements,
                  "fixed_ms": table.fixed_ms, "other_ms": table.other_ms, "full_measured_ms": table.full_measured_ms,
                  "seconds": t_table},
        "end_to_end_seconds": t_e2e,
        "subnets": len(errs),
        "median_rel_error": statistics.median(errs),
        "max_rel_error": max(errs),
        "mean_rel_error": statistics.mean(errs),
        "goal": {"median": 0.05, "max": 0.15},
        "relative_to_full": ratio,
        "beside_full": {
            "median_rel_error": statistics.median(b_errs), "max_rel_error": max(b_errs),
            "mean_rel_error": statistics.mean(b_errs),
            "relative_to_full": {"median_rel_error": statistics.median(b_ratio), "max_rel_error": max(b_ratio)},
            "full_p50_spread": full_spread(rows),
            "protocol": "each sub-net measured interleaved with the full network only (2 sessions), as the table "
                        "calibrates its full network; the top-level errors interleave all sub-nets round-robin",
        },
        "latency_range_measured": [min(r["measured_p50_ms"] for r in rows), max(r["measured_p50_ms"] for r in rows)],
        "rows": rows,
    }
    if calibrated is not None:
        cal_pred = {s.name: calibrated.predict_ms(net.widths(s)) for s in specs}
        result["calibrated"] = calibrated_scores(rows, calibrated, cal_pred, args, t_cal)
    if args.score_table:
        result["stored_tables"] = score_tables(rows, args.score_table, net)
    write_results(args.out, result)
    _print_stored(result)
    bf = result["beside_full"]
    print(f"beside the full network: median {100 * bf['median_rel_error']:.1f}%  max {100 * bf['max_rel_error']:.1f}%")
    if calibrated is not None:
        c = result["calibrated"]
        print(f"calibrated on {c['networks']} networks ({c['fit']['kind']} fit): relative to the full network "
              f"median {100 * c['relative_to_full']['median_rel_error']:.1f}%  max "
              f"{100 * c['relative_to_full']['max_rel_error']:.1f}%; absolute median "
              f"{100 * c['median_rel_error']:.1f}%  max {100 * c['max_rel_error']:.1f}%")
    print(f"all interleaved: median {100 * result['median_rel_error']:.1f}%  max {100 * result['max_rel_error']:.1f}%  "
          f"over {len(errs)} sub-nets; load {load_before} -> {result['machine']['load_avg_after']}; -> {args.out}")
    return result


if __name__ == "__main__":
    main()
