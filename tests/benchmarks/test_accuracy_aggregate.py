"""The standard accuracy benchmark's matching rules (benchmarks/accuracy_aggregate.py) on hand-written rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from accuracy_aggregate import arch_key, compare_seed, matched_latency, matched_macs, summarize  # noqa: E402


def _row(name, c, macs, acc):
    return {"name": name, "widths": {"g0": c, "g1": 2 * c}, "macs": macs, "test_accuracy": acc}


GRID = [_row("w4", 4, 400, 90.0), _row("w3", 3, 300, 89.0), _row("w2", 2, 200, 87.0), _row("w1", 1, 100, 80.0)]
LAT = {arch_key(g["widths"]): {"b1_p50": 0.1 * g["widths"]["g0"] + 0.2} for g in GRID}  # 0.6 0.5 0.4 0.3 ms


def test_matched_latency_takes_most_accurate_width_not_slower():
    grid = [{**g, **LAT[arch_key(g["widths"])]} for g in GRID]
    assert matched_latency(0.55, grid)["name"] == "w3"
    assert matched_latency(0.5, grid)["name"] == "w3"  # equal latency counts as not larger
    assert matched_latency(0.29, grid) is None  # every width is slower
    # a slower width that is less accurate never wins over a faster, more accurate one
    odd = [*grid, {**_row("x", 9, 250, 95.0), "b1_p50": 0.35}]
    assert matched_latency(0.45, odd)["name"] == "x"


def test_matched_macs_is_nearest():
    assert matched_macs(260, GRID)["name"] == "w3"
    assert matched_macs(250, GRID)["name"] == "w2"  # tie: the smaller
    assert matched_macs(10_000, GRID)["name"] == "w4"


def test_compare_and_summarize_over_seeds():
    prog_widths = [{"g0": 5, "g1": 3}, {"g0": 6, "g1": 1}]
    lat = {**LAT, arch_key(prog_widths[0]): {"b1_p50": 0.52}, arch_key(prog_widths[1]): {"b1_p50": 0.31}}
    usnet = {"grid": GRID}
    seeds = {}
    for seed, bump in ((0, 0.0), (1, 1.0)):
        prog = {"subnets": [{"name": "m90", "widths": prog_widths[0], "macs": 390, "test_accuracy": 89.5 + bump},
                            {"name": "m20", "widths": prog_widths[1], "macs": 120, "test_accuracy": 85.0 + bump}]}
        seeds[seed] = compare_seed(prog, usnet, lat)
    first = seeds[0]
    assert first[0]["usnet_at_latency"]["name"] == "w3" and first[0]["gap_at_latency"] == pytest.approx(0.5)
    assert first[0]["usnet_at_macs"]["name"] == "w4" and first[0]["gap_at_macs"] == pytest.approx(-0.5)
    assert first[1]["usnet_at_latency"]["name"] == "w1" and first[1]["gap_at_latency"] == pytest.approx(5.0)
    assert [r["smaller_half"] for r in first] == [False, True]
    s = summarize(seeds)
    top, small = s["per_rank"]
    assert top["progressive"]["n"] == 2 and top["progressive"]["mean"] == pytest.approx(90.0)
    assert top["progressive"]["sd"] == pytest.approx(0.7071, abs=1e-4)
    assert small["gap_at_latency"]["mean"] == pytest.approx(5.5)
    g = s["goals"]
    assert g["mean_gap_at_latency_smaller_half"] == pytest.approx(5.5) and g["goal_plus1_smaller_half"]
    assert g["min_gap_at_latency"] == pytest.approx(1.0) and g["goal_never_below_minus_0.3"]
    assert not g["goal_read_over_3_seeds"]
