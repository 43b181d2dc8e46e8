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
