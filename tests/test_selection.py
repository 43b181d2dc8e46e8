"""Selection helpers shared by the search and the bench plots (torch-free): Pareto front, re-selection, names."""

from __future__ import annotations

import pytest

from slimrt.errors import ConfigError
from slimrt.selection import pareto_front, reselect, subnet_names


def test_pareto_front_and_reselection():
    macs = [100, 90, 80, 70, 60, 50, 40, 30, 20, 10]
    accs = [95.0, 95.5, 94.0, 94.5, 93.0, 92.0, 92.5, 90.0, 85.0, 80.0]
    front = pareto_front(macs, accs)
    assert front == [9, 8, 7, 6, 4, 3, 1]  # cheapest first; 0 (beaten by 1), 2 (by 3) and 5 (by 6) are dominated
    picks = reselect(macs, accs, 4)
    assert all(p in front for p in picks)
    # Spread: the front's ends plus the points nearest the evenly spaced levels 63.3 and 36.7.
    assert picks == [1, 4, 6, 9]
    assert reselect(macs, accs, 4, pareto=False) == [0, 3, 6, 9]
    assert reselect(macs, accs, 1) == [1]
    # Targets: the most accurate candidate within each budget.
    assert reselect(macs, accs, 3, targets=[1.0, 0.55, 0.05], full_macs=100) == [1, 6, 9]
    assert reselect(macs, accs, 2, targets=[0.45, 0.41], full_macs=100) == [6, 7]
    # A short front is filled up with other candidates.
    flat = reselect([100, 50, 10], [90.0, 95.0, 96.0], 3)
    assert flat == [0, 1, 2]
    with pytest.raises(ConfigError, match="fewer than"):
        reselect(macs[:2], accs[:2], 3)
    # keep_largest: the dominated full candidate 0 becomes the top pick and the spread starts from it.
    assert reselect(macs, accs, 4, keep_largest=True) == [0, 3, 6, 9]
    assert reselect(macs, accs, 1, keep_largest=True) == [0]
    assert reselect(macs, accs, 3, targets=[1.0, 0.55, 0.05], full_macs=100, keep_largest=True) == [0, 6, 9]
    assert reselect(macs, accs, 4, keep_largest=True) != reselect(macs, accs, 4)
    assert subnet_names([100, 55, 55, 10], 100) == ["m100", "m55", "m55b", "m10"]


def test_pareto_front_orders_cheapest_first_and_keeps_exact_duplicates():
    lat = [1.0, 2.0, 3.0, 2.5, 0.5, 2.0]
    acc = [70.0, 80.0, 90.0, 75.0, 60.0, 79.0]
    assert pareto_front(lat, acc) == [4, 0, 1, 2]  # 3 is beaten by 1, 5 by 1 (same cost, less accurate)
    assert pareto_front([1.0, 1.0], [5.0, 5.0]) == [0, 1]
    with pytest.raises(ValueError, match="same length"):
        pareto_front([1.0], [1.0, 2.0])


def test_plot_uses_the_shared_pareto_front():
    import slimrt.plot

    assert slimrt.plot.pareto_front is pareto_front
