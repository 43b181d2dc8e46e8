"""The recovery section's reading of a trace of slowdown estimates (benchmarks/_adherence.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _adherence import settle_index  # noqa: E402


def test_settle_index_is_the_start_of_the_last_run_that_satisfies():
    def ok(v: float) -> bool:
        return v <= 1.1

    assert settle_index([5.0, 2.0, 1.05, 1.0, 1.0], ok) == 2
    # a late excursion restarts the count: the first clear call is not the settled one
    assert settle_index([5.0, 1.0, 1.3, 1.0], ok) == 3
    assert settle_index([1.0, 1.0], ok) == 0
    assert settle_index([1.0, 1.2], ok) is None
    assert settle_index([], ok) is None


def test_misses_counts_what_no_pair_could_absorb():
    from _adherence import _misses

    quiet = {"big@2": 1.0, "small@1": 0.3}
    # budget 2.0: call 0 fine; call 1 big 2.5 (delay 1.5, on small 1.8: absorbable); call 25 small 2.4 (delay 2.1:
    # 2.4 even on the fastest pair: not absorbable)
    lat = [1.0] + [2.5] + [1.0] * 23 + [2.4]
    served = ["big@2", "big@2"] + ["big@2"] * 23 + ["small@1"]
    m = _misses(lat, served, 2.0, quiet)
    assert m == {"misses": 2, "misses_first_20_calls": 1, "miss_ms": [2.4, 2.5], "misses_no_pair_absorbs": 1}
    assert "misses_no_pair_absorbs" not in _misses(lat, served, 2.0, None)
