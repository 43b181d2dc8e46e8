"""Refit a latency table with one scale per resolution stage, judged on random sub-nets no search chose (issue 11).

The aggregate's predictor check (``aggregate.md``) shows a structural error of the per-layer table: relative to the
full network, sub-nets whose first-stage stream is narrower than the full one run slower than predicted and those
that keep it run faster. The layers of one resolution stage share their activations' size and layout conversions,
which a layer timed alone does not see. This script fits ``offset + sum over stages of scale_stage x (the stage's
layer entries)`` (a stage: the layers whose input has one spatial size; plain-layout layers times ``plain_factor``)
on the batch-1 p50 the standard accuracy aggregate measured for every run's architecture (median over its windows,
scaled to a common speed), leave-one-out, and judges it on the aggregate's random unit-grid probes (24 sub-nets
measured in the same windows, never fitted on), against the table as it is.

Usage::

    python benchmarks/latency_stage_fit.py [--table latency-table-cpu-plain.json]

No new measurement: it reads ``aggregate.json``. Errors "relative to the full network" compare measured / measured
full with predicted / predicted full, which cancels a drift between the table's window and the aggregate's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
STANDARD = HERE / "results" / "accuracy" / "standard-resnet20"
RESULTS = HERE / "results" / "latency-stage-fit-resnet20.json"
PROBES = "random unit-grid sub-nets (probes)"


def stage_sums(table, widths: dict[str, int], stages: list[str]) -> list[float]:
    """``[1, sum of the layer entries of each stage]`` for ``widths`` (:meth:`LatencyTable.stage_ms`)."""
    sums = table.stage_ms(widths)
    return [1.0, *(sums[s] for s in stages)]


def _errors(pred: list[float], meas: list[float], pred_full: float, meas_full: float) -> dict[str, float]:
    rel = [abs((m / meas_full) / (p / pred_full) - 1.0) for p, m in zip(pred, meas, strict=True)]
    ab = [abs(m / p - 1.0) for p, m in zip(pred, meas, strict=True)]
    return {"median_rel_to_full": statistics.median(rel), "max_rel_to_full": max(rel),
            "median_abs": statistics.median(ab), "max_abs": max(ab)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--aggregate", type=Path, default=STANDARD / "aggregate.json")
    p.add_argument("--table", type=Path, default=STANDARD / "latency-table-cpu-plain.json")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--out-table", type=Path, default=None,
                   help="also write the table with the fitted stage scales (usable as slimrt train --latency-table; "
                        "its milliseconds are the aggregate's common speed)")
    args = p.parse_args(argv)
    from slimrt.schema import LatencyTable

    for f in (args.aggregate, args.table):
        if not f.is_file():
            raise SystemExit(f"{f} does not exist")
    table = LatencyTable.model_validate_json(args.table.read_text())
    agg = json.loads(args.aggregate.read_text())
    samples = [(row["widths"], float(row["b1_p50"])) for row in agg["latency"].values() if "b1_p50" in row]
    checks = [c for c in (agg.get("predictor_checks") or {}).values() if c and PROBES in c["families"]]
    if not samples or not checks:
        raise SystemExit(f"{args.aggregate} has no measured architectures or no {PROBES!r} (run the aggregate)")
    probes = [(r["widths"], float(r["measured_ms"])) for r in checks[0]["families"][PROBES]["rows"]]
    full_w = dict(table.groups)
    full = [m for w, m in samples if all(w.get(g, c) >= c for g, c in full_w.items() if g in w)]
    if not full:
        raise SystemExit(f"{args.aggregate} did not measure the full network")
    meas_full = full[0]
    stages = table.stages()
    if not stages:
        raise SystemExit(f"{args.table} has no layer with a spatial input (nothing to fit per stage)")
    from slimrt.bench.layers import fit_stage_scales

    y = [m for _, m in samples]
    pm = [m for _, m in probes]
    try:  # the library's fit, as `slimrt latency-table --calibrate N --fit stages` runs it on the device
        fitted_table = fit_stage_scales(table, samples, loo=False)
    except ValueError as e:
        raise SystemExit(f"stage fit on {len(samples)} networks failed: {e}") from None
    coef = [fitted_table.fixed_ms + fitted_table.other_ms, *(fitted_table.stage_scales[st] for st in stages)]
    loo = []
    for i in range(len(samples)):
        try:
            one_out = fit_stage_scales(table, samples[:i] + samples[i + 1:], loo=False)
        except ValueError:  # a non-positive scale without this network: judged by the full fit, as the library does
            one_out = fitted_table
        loo.append(one_out.predict_ms(samples[i][0]))
    pred_full = fitted_table.predict_ms(full_w)
    res = {
        "command": command_line("latency_stage_fit.py", argv), "aggregate": str(args.aggregate),
        "table": args.table.name, "windows": len(agg.get("latency_windows", [])), "stages": stages,
        "fit": {"networks": len(samples), "offset_ms": coef[0], "scales": dict(zip(stages, coef[1:], strict=True))},
        "goal": {"median": 0.05, "max": 0.15},
        "probes": {
            "n": len(probes),
            "windows": sorted({r.get("windows") for r in checks[0]["families"][PROBES]["rows"]} - {None}),
            "table_as_is": _errors([table.predict_ms(w) for w, _ in probes], pm, table.predict_ms(full_w), meas_full),
            "stage_fit": _errors([fitted_table.predict_ms(w) for w, _ in probes], pm, pred_full, meas_full),
        },
        "runs_architectures_loo": _errors(loo, y, pred_full, meas_full),
        "runs_architectures_table_as_is": _errors([table.predict_ms(w) for w, _ in samples], y,
                                                  table.predict_ms(full_w), meas_full),
    }  # fmt: skip
    if args.out_table is not None:
        judged = res["probes"]["stage_fit"]
        fitted_table = type(table).model_validate(fitted_table.model_copy(update={
            "fit": {**fitted_table.fit, "source": args.aggregate.name,
                    "probes_median_rel_to_full": judged["median_rel_to_full"],
                    "probes_max_rel_to_full": judged["max_rel_to_full"]}}).model_dump())  # fmt: skip
        from slimrt.io import atomic_write_bytes

        atomic_write_bytes(args.out_table, fitted_table.model_dump_json(indent=1).encode())
        res["out_table"] = str(args.out_table)
    write_results(args.out, res)
    for k in ("table_as_is", "stage_fit"):
        e = res["probes"][k]
        print(f"probes, {k}: relative to full median {100 * e['median_rel_to_full']:.1f}% max "
              f"{100 * e['max_rel_to_full']:.1f}%; absolute median {100 * e['median_abs']:.1f}% max "
              f"{100 * e['max_abs']:.1f}%")  # fmt: skip
    print(f"scales {json.dumps({s: round(v, 3) for s, v in res['fit']['scales'].items()})}, offset "
          f"{coef[0]:.3f} ms, written to {args.out}")
    return res


if __name__ == "__main__":
    main()
