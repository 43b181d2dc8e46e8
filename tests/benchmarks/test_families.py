"""benchmarks/families.py's table and range on hand-written rows (the measurement itself runs in the benchmark)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from families import _range, markdown_table  # noqa: E402


def _row(width, macs, p50_1, p50_8):
    return {"arch": "resnet18", "width": width, "name": f"w{width:g}", "macs": macs, "params": 2_000_000,
            "batches": {"1": {"p50_ms": p50_1, "p95_ms": 1.5 * p50_1, "speedup_p50": 10.0 / p50_1},
                        "8": {"p50_ms": p50_8, "p95_ms": 1.2 * p50_8, "speedup_p50": 60.0 / p50_8}}}  # fmt: skip


def test_table_has_one_line_per_width_with_speedups_and_range_is_the_family_spread():
    rows = [_row(1.0, 1_814_000_000, 10.0, 60.0), _row(0.5, 483_000_000, 2.5, 20.0)]
    lines = markdown_table(rows, [1, 8]).splitlines()
    assert len(lines) == 4 and lines[0].count("|") == 11 and "b8 speed-up" in lines[0]
    assert lines[2] == "| resnet18 | 1 | 1,814 | 2.00 | 10.0 | 15.0 | 1.00x | 60.0 | 72.0 | 1.00x |"
    assert lines[3].endswith("| 2.5 | 3.8 | 4.00x | 20.0 | 24.0 | 3.00x |")
    assert _range(rows, "resnet18", 1) == {"min_p50_ms": 2.5, "max_p50_ms": 10.0, "ratio": 4.0}
