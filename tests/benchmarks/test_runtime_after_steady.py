"""benchmarks/runtime.py, section after_steady: the largest sub-net's first calls after a steady run, timed on real
ONNX Runtime sessions of the benchmark's synthetic artifact, with and without steady sessions."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from runtime import AFTER_STEADY_WINDOWS, _table, bench_after_steady, build_synthetic  # noqa: E402


def test_after_steady_times_the_switch_after_a_run_served_by_the_steady_session(tmp_path: Path) -> None:
    root = build_synthetic(tmp_path / "synthetic.slim")
    r = bench_after_steady(root, 2, quick=True, run_calls=100)
    assert (r["big"], r["small"], r["repetitions"]) == ("w64", "w40", 4)
    # the default runtime served every call of each run after the 64th from its steady session (steady_after=64)
    assert r["steady_calls_of_default"] == 4 * (100 - 64)
    keys = ["1", "2", "3", "4", "5", "6-20", "21-40"]
    assert [f"{lo}-{hi}" if hi > lo else str(lo) for lo, hi in AFTER_STEADY_WINDOWS] == keys
    for mode in ("default", "no_steady"):
        assert list(r["median_us"][mode]) == keys and all(v > 0 for v in r["median_us"][mode].values())
    assert r["ratio_default_over_no_steady"]["6-20"] == r["median_us"]["default"]["6-20"] / r["median_us"][
        "no_steady"]["6-20"]
    row = next(line for line in _table({"sections": {"after_steady": r}}).splitlines() if "after 100 calls" in line)
    assert row.startswith("| w64 after 100 calls on w40")
