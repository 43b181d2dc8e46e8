"""Latency predicted from the per-layer table *plus what ONNX Runtime's optimizer does to the graph* (issue 11).

    python benchmarks/latency_graph_fit.py      # writes benchmarks/results/latency-graph-fit-resnet20.json

The per-layer table (before ``plain_factor``) misses that ONNX Runtime runs a convolution in its blocked NCHWc layout
only when its input channel count is below the SIMD block or a multiple of 4 (what its ``ReorderInput`` supports);
otherwise it falls back to a plain one (``FusedConv``), whatever its neighbours: a 13/26/52-channel ResNet-20 has 15
plain convolutions (the 13- and 26-channel inputs), 12-channel layers stay blocked (padded). The rule
(:func:`slimrt.schema.plain_layout`) reproduces the plain count of all 153 architectures below; the table's
``plain_factor`` now prices those layers. This script exports every architecture the standard
accuracy aggregate measured and every random sub-net of a latency-table run, lets ONNX Runtime (all optimizations,
as ``slimrt bench`` runs it) write its optimized graph, and counts its node kinds. It then fits, on the aggregate's
batch-1 p50 medians (relative least squares), models of the form

    latency = c0 + c1 x (sum of the table's layer entries) [+ c2 x plain convolutions] [+ c3 x reorders]

(and the table's own alignment refit, for comparison), and judges each

- leave-one-out on the aggregate's architectures, and
- out of sample on the latency-table run's random sub-nets (``--judge``, measured in another window), relative to
  that run's full network (the table's protocol, which cancels a drift shared by the whole window).

No timing here: the graphs depend on the CPU's vector width, not on its load; the latencies are the stored ones.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, write_results  # noqa: E402
from accuracy_aggregate import arch_key  # noqa: E402
from ort_layout import layout  # noqa: E402

HERE = Path(__file__).resolve().parent
STANDARD = HERE / "results" / "accuracy" / "standard-resnet20"
RESULTS = HERE / "results" / "latency-graph-fit-resnet20.json"
MODELS: dict[str, tuple[str, ...]] = {
    "table alignment refit (1, aligned layers, other layers)": ("one", "aligned_ms", "other_ms"),
    "table sum (1, layers)": ("one", "layers_ms"),
    "table sum + plain convs": ("one", "layers_ms", "plain_convs"),
    "table sum + plain convs + reorders": ("one", "layers_ms", "plain_convs", "reorders"),
}


def graph_counts(net: Any, widths: dict[str, int], tmp: Path) -> dict[str, int]:
    """Blocked convolutions, plain ones and layout reorders in the ORT-optimized graph of the sub-net keeping
    ``widths`` (:func:`ort_layout.layout`)."""
    counts = layout(widths, net, tmp, "a")
    return {k: counts[k] for k in ("nchwc_convs", "plain_convs", "reorders")}


def features(table: Any, widths: dict[str, int], graph: dict[str, int]) -> dict[str, float]:
    aligned, other = table.split_ms(widths, table.align or 8)
    return {"one": 1.0, "aligned_ms": aligned, "other_ms": other, "layers_ms": aligned + other,
            "plain_convs": float(graph["plain_convs"]), "reorders": float(graph["reorders"])}


def fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares on relative errors (each network weighs the same whatever its latency)."""
    w = 1.0 / y
    return np.linalg.lstsq(x * w[:, None], y * w, rcond=None)[0]


def judge_model(cols: tuple[str, ...], train: list[dict[str, float]], y: np.ndarray,
                held: list[dict[str, float]], held_y: np.ndarray, held_full: int) -> dict[str, Any]:  # fmt: skip
    """Coefficients fitted on ``train``; in-sample and leave-one-out relative errors there; errors on ``held``
    relative to its full network (index ``held_full``)."""
    x = np.array([[f[c] for c in cols] for f in train])
    coef = fit(x, y)
    ins = np.abs(x @ coef / y - 1)
    loo = [abs(x[i] @ fit(np.delete(x, i, 0), np.delete(y, i)) / y[i] - 1) for i in range(len(y))]
    hx = np.array([[f[c] for c in cols] for f in held])
    pred = hx @ coef
    rel = [abs((pred[i] / pred[held_full]) / (held_y[i] / held_y[held_full]) - 1)
           for i in range(len(held_y)) if i != held_full]  # fmt: skip
    return {"features": list(cols), "coef": [float(c) for c in coef],
            "fit": {"n": len(y), "median_rel_error": float(np.median(ins)), "max_rel_error": float(ins.max())},
            "leave_one_out": {"median_rel_error": float(np.median(loo)), "max_rel_error": float(max(loo))},
            "judged": {"n": len(rel), "median_rel_error": statistics.median(rel), "max_rel_error": max(rel),
                       "note": "predicted/predicted-full vs measured/measured-full, the judged run's own full net"}}


def main(argv: list[str] | None = None) -> int:
    head, rest = __doc__.split("\n\n", 1)
    p = argparse.ArgumentParser(description=head, epilog=rest, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--aggregate", type=Path, default=STANDARD / "aggregate.json", help="measured architectures")
    p.add_argument("--table", type=Path, default=STANDARD / "latency-table-cpu.json", help="the per-layer table")
    p.add_argument("--judge", type=Path, default=HERE / "results" / "latency-table-resnet20-run4.json",
                   help="a latency_table.py run whose random sub-nets (rows with widths) judge the fits")
    p.add_argument("--min-windows", type=int, default=1, help="fit only on architectures measured in this many windows")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    for f in (args.aggregate, args.table, args.judge):
        if not f.is_file():
            raise SystemExit(f"latency_graph_fit: {f} does not exist")
    import torch

    from slimrt.models import create_model
    from slimrt.train.dynamic import DynamicNet
    from slimrt.train.latency import load_latency_table

    table = load_latency_table(args.table).model_copy(update={"plain_factor": None})  # counted by the fits here
    agg = json.loads(args.aggregate.read_text())
    judged = [r for r in json.loads(args.judge.read_text())["rows"] if "widths" in r]
    if not any(r["name"] == "full" for r in judged):
        raise SystemExit(f"latency_graph_fit: {args.judge} has no 'full' row to judge relative to")
    train_keys = [k for k, v in agg["latency"].items() if v.get("windows", 1) >= args.min_windows]
    archs = {k: agg["latency"][k]["widths"] for k in train_keys}
    archs.update({arch_key(r["widths"]): r["widths"] for r in judged})
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = DynamicNet(create_model("resnet20", in_channels=1, num_classes=10), torch.zeros(1, 1, 28, 28)).eval()
    graphs: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="slimrt-graph-") as tmp:
        for i, (k, w) in enumerate(archs.items()):
            graphs[k] = graph_counts(net, w, Path(tmp))
            print(f"{i + 1}/{len(archs)} {graphs[k]}", file=sys.stderr, flush=True)
    train = [features(table, archs[k], graphs[k]) for k in train_keys]
    y = np.array([agg["latency"][k]["b1_p50"] for k in train_keys])
    held = [features(table, r["widths"], graphs[arch_key(r["widths"])]) for r in judged]
    held_y = np.array([r["measured_p50_ms"] for r in judged])
    full = next(i for i, r in enumerate(judged) if r["name"] == "full")
    models = {name: judge_model(cols, train, y, held, held_y, full) for name, cols in MODELS.items()}
    plain = collections.Counter(g["plain_convs"] for g in graphs.values())
    payload = {"command": command_line("benchmarks/latency_graph_fit.py", argv), "aggregate": str(args.aggregate.name),
               "table": args.table.name, "judge": args.judge.name, "machine": agg.get("machine"),
               "trained_on": len(train_keys), "judged_on": len(judged) - 1,
               "plain_convs_histogram": {str(k): v for k, v in sorted(plain.items())},
               "goal": {"median": 0.05, "max": 0.15}, "models": models,
               "graphs": {k: {"widths": archs[k], **g} for k, g in graphs.items()}}  # fmt: skip
    write_results(args.out, payload)
    for name, m in models.items():
        loo, held_err = m["leave_one_out"], m["judged"]
        print(f"{name:55s} LOO {100 * loo['median_rel_error']:4.1f}% / {100 * loo['max_rel_error']:4.1f}%   judged "
              f"{100 * held_err['median_rel_error']:4.1f}% / {100 * held_err['max_rel_error']:4.1f}%  "
              f"coef {np.round(m['coef'], 4).tolist()}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
