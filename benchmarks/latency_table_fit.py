"""Refit a latency table's scales on whole networks measured end to end, with channel alignment (issue 11).

The per-layer table times every layer alone; ONNX Runtime runs a whole network of layers whose channel counts are
multiples of the SIMD block in a blocked layout that pays its layout conversions once, so the table over-predicts
such networks and under-predicts the others (``aggregate.md``, predictor check). This script fits ``other_ms``, an
aligned-layer scale and an other-layer scale (:func:`slimrt.bench.layers.fit_alignment`) on the batch-1 p50 that
the standard accuracy aggregate measured for every recorded architecture (median over its windows), and reports:

- the table as it is, on every architecture;
- the fit on all of them, in sample and leave-one-out;
- a hold-out split: fitted on the uniform widths only, judged on the searched (non-uniform) sub-nets, and the
  reverse.

It writes the refitted table (``--out-table``), usable as ``slimrt train --cost latency --latency-table FILE``, and
the results (``--out``). No new measurement: it reads ``aggregate.json``.

Usage::

    python benchmarks/latency_table_fit.py
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
RESULTS = HERE / "results" / "latency-table-fit-resnet20.json"


def load_samples(aggregate: Path) -> list[tuple[dict[str, int], float]]:
    """(widths, batch-1 p50 ms) of every architecture the aggregate measured."""
    lat = json.loads(aggregate.read_text())["latency"]
    out = []
    for key, v in lat.items():
        widths = {g: int(c) for g, c in (item.split("=") for item in key.split(","))}
        out.append((widths, float(v["b1_p50"])))
    return out


def is_uniform(widths: dict[str, int], groups: dict[str, int]) -> bool:
    """Every group at ``ceil(c / C x channels)`` for one ``c`` (the US-Nets grid's rule), ``C`` the widest group."""
    prunable = {g: n for g, n in groups.items() if g in widths}  # the others (input, classes) never change
    wide = max(prunable, key=lambda g: prunable[g])
    c, full = widths[wide], prunable[wide]
    return all(widths[g] == -(-c * n // full) for g, n in prunable.items())


def relative_errors(table, samples) -> dict[str, float]:
    """Errors of predicted/predicted-full against measured/measured-full: a latency level that differs between the
    table's measurement and the aggregate's (another window, another protocol) cancels."""
    full = next(m for w, m in samples if all(w[g] == c for g, c in table.groups.items() if g in w))
    pf = table.predict_ms({})
    e = [abs((table.predict_ms(w) / pf) / (m / full) - 1) for w, m in samples]
    return {"median_rel_error": statistics.median(e), "max_rel_error": max(e)}


def judge(table, samples, uniform, searched) -> dict:
    """Absolute errors on all / uniform / searched networks, and the relative-to-full errors on all."""
    return {"all": errors(table, samples), "uniform": errors(table, uniform), "searched": errors(table, searched),
            "relative_to_full": relative_errors(table, samples)}


def errors(table, samples) -> dict[str, float]:
    """Relative error of ``table``'s prediction on ``samples`` (widths, measured ms): count, median, max."""
    e = [abs(table.predict_ms(w) / m - 1) for w, m in samples]
    return {"n": len(e), "median_rel_error": statistics.median(e), "max_rel_error": max(e)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--aggregate", type=Path, default=STANDARD / "aggregate.json")
    p.add_argument("--table", type=Path, default=STANDARD / "latency-table-cpu.json")
    p.add_argument("--out-table", type=Path, default=STANDARD / "latency-table-cpu-fitted.json")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--aligns", default="8,16", help="candidate channel multiples (the best by leave-one-out is kept)")
    p.add_argument("--judge", type=Path, nargs="*", default=[],
                   help="other tables (e.g. from `slimrt latency-table --calibrate N`) to judge on the same networks")
    args = p.parse_args(argv)

    from slimrt.bench.layers import fit_alignment
    from slimrt.io import atomic_write_text
    from slimrt.schema import LatencyTable

    table = LatencyTable.model_validate_json(args.table.read_text())
    aligns = [int(a) for a in args.aligns.split(",") if a.strip()]
    samples = load_samples(args.aggregate)
    groups = table.groups
    uniform = [s for s in samples if is_uniform(s[0], groups)]
    searched = [s for s in samples if not is_uniform(s[0], groups)]
    try:
        fitted = fit_alignment(table, samples, aligns)
    except ValueError as e:
        raise SystemExit(f"cannot refit {args.table}: {e}") from None

    def holdout(fit_on: list, judge: list) -> dict:
        try:
            t = fit_alignment(table, fit_on, aligns)
        except ValueError as e:
            return {"skipped": str(e)}
        return {"align": t.align, **errors(t, judge)} if judge else {"skipped": "nothing to judge"}

    result = {
        "command": command_line("latency_table_fit.py", argv),
        "aggregate": str(args.aggregate.relative_to(HERE.parent) if args.aggregate.is_relative_to(HERE.parent)
                         else args.aggregate),
        "machine": json.loads(args.aggregate.read_text()).get("machine"),
        "table": str(args.table.name),
        "networks": {"all": len(samples), "uniform": len(uniform), "searched": len(searched)},
        "table_as_is": judge(table, samples, uniform, searched),
        "fitted_judged": judge(fitted, samples, uniform, searched),
        "other_tables": {
            str(t): {"fit": (o := LatencyTable.model_validate_json(t.read_text())).fit, "align": o.align,
                     "aligned_scale": o.aligned_scale, "scale": o.scale, **judge(o, samples, uniform, searched)}
            for t in args.judge
        },
        "fitted_on_all": {"align": fitted.align, "other_ms": fitted.other_ms, "aligned_scale": fitted.aligned_scale,
                          "scale": fitted.scale, **(fitted.fit or {})},
        "holdout": {
            "fit_on_uniform_judge_searched": holdout(uniform, searched),
            "fit_on_searched_judge_uniform": holdout(searched, uniform),
        },
        "note": "latencies are the aggregate's medians over its windows on one machine; the fit reads them, it "
                "measures nothing",
    }
    atomic_write_text(args.out_table, fitted.model_dump_json(indent=1))
    write_results(args.out, result)
    for name, v in result["other_tables"].items():
        print(f"{name}: median {100 * v['all']['median_rel_error']:.1f}% (searched "
              f"{100 * v['searched']['median_rel_error']:.1f}%, uniform "
              f"{100 * v['uniform']['median_rel_error']:.1f}%), "
              f"relative to the full network {100 * v['relative_to_full']['median_rel_error']:.1f}% / max "
              f"{100 * v['relative_to_full']['max_rel_error']:.1f}%")
    ho = result["holdout"]
    print(f"as is: median {100 * result['table_as_is']['all']['median_rel_error']:.1f}%, max "
          f"{100 * result['table_as_is']['all']['max_rel_error']:.1f}% over {len(samples)} networks")
    print(f"fitted (align {fitted.align}): leave-one-out median {100 * fitted.fit['loo_median_rel_error']:.1f}%, max "
          f"{100 * fitted.fit['loo_max_rel_error']:.1f}%")
    for k, v in ho.items():
        if "skipped" in v:
            print(f"{k}: skipped ({v['skipped']})")
        else:
            print(f"{k}: median {100 * v['median_rel_error']:.1f}%, max {100 * v['max_rel_error']:.1f}% (n {v['n']})")
    return result


if __name__ == "__main__":
    main()
