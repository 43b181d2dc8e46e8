"""Latency-table diagnostic (issue 11, item 1): is the cell with the fewest input and output channels of a part
measured too high because of where it sits in ``measure_latency``'s rotation (always right after the per-call
reference model), or does it run slower? Measures the grid of ResNet-20's 64x64 3x3 conv at 7x7 (in and out 8-32)
in three orders, twice: the table's order (cells, then the reference), reference first, cells reversed. Values are
each cell's p50 minus the reference's, in us.

Usage::

    python benchmarks/latency_table_cell_order.py [OUT.json]   # default results/latency-table-cell-order-intel.json
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from slimrt.bench.layers import PartShape, _measure, identity_model, part_model

RESULTS = Path(__file__).resolve().parent / "results" / "latency-table-cell-order-intel.json"

part = PartShape(kind="conv", in_full=64, out_full=64, in_hw=(7, 7), kernel=(3, 3), stride=(1, 1), padding=(1, 1),
                 in_grid=(8, 16, 24, 32), out_grid=(8, 16, 24, 32))
rng = np.random.default_rng(0)
cells = {}
for i in part.in_grid:
    for o in part.out_grid:
        cells[f"{i}x{o}"] = (part_model(part, i, o, 1), np.asarray(rng.standard_normal((1, i, 7, 7)), np.float32))
entries = {**cells, "call": (identity_model([1, 64, 7, 7]), np.asarray(rng.standard_normal((1, 64, 7, 7)), np.float32))}
orders = {
    "table (cells, then call)": [*cells, "call"],
    "call first": ["call", *cells],
    "cells reversed, then call": [*reversed(list(cells)), "call"],
}
out = {}
with tempfile.TemporaryDirectory() as d:
    for rep in range(2):
        for name, order in orders.items():
            models = {k: entries[k][0] for k in order}
            inputs = {k: entries[k][1] for k in order}
            lat = _measure(models, inputs, Path(d), None, 20, 200, None)
            row = {k: round((lat[k] - lat["call"]) * 1000, 2) for k in cells}
            out.setdefault(name, []).append(row)
            print(rep, name, "8x8", row["8x8"], "8x16", row["8x16"], "16x8", row["16x8"], "16x16", row["16x16"],
                  "32x32", row["32x32"], flush=True)
dest = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
dest.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "orders_us_over_call": out}, indent=1))
