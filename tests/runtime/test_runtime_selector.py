"""The pure selection rule: hand-written profiles and hypothesis properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slimrt.errors import BudgetError
from slimrt.runtime.selector import Candidate, Selector, select
from slimrt.schema import SubnetLatency


def lat(name: str, p95: float, p50: float | None = None) -> SubnetLatency:
    p50 = p95 * 0.8 if p50 is None else p50
    return SubnetLatency(name=name, p50_ms=p50, p90_ms=(p50 + p95) / 2, p95_ms=p95, p99_ms=p95 * 1.2,
                         mean_ms=p50, cv=0.1, runs=100)


def cand(name: str, acc: float, p95: float) -> Candidate:
    return Candidate(name, acc, lat(name, p95))


PROFILE = [cand("full", 92.0, 4.0), cand("mid", 90.0, 2.5), cand("small", 85.0, 1.0)]


@pytest.mark.parametrize(
    ("budget", "expected", "feasible"),
    [(10.0, "full", True), (4.0, "full", True), (3.99, "mid", True), (2.5, "mid", True), (1.0, "small", True),
     (0.5, "small", False)],
)
def test_budget_thresholds(budget: float, expected: str, feasible: bool) -> None:
    s = select(PROFILE, budget, quantile=0.95)
    assert (s.name, s.feasible) == (expected, feasible)
    assert s.predicted_ms == pytest.approx({"full": 4.0, "mid": 2.5, "small": 1.0}[expected])


def test_budget_exactly_at_interpolated_quantile() -> None:
    c = Candidate("a", 80.0, SubnetLatency(name="a", p50_ms=1.0, p90_ms=2.0, p95_ms=3.0, p99_ms=4.0, mean_ms=1.5,
                                           cv=0.2, runs=10))
    assert c.latency.quantile_ms(0.9) == 2.0
    assert select([c], 2.0, quantile=0.9).feasible
    assert not select([c], 1.999, quantile=0.9).feasible
    # Between stored quantiles the prediction interpolates: q=0.925 -> 2.5 ms.
    assert select([c], 2.6, quantile=0.925).predicted_ms == pytest.approx(2.5)
    assert select([c], 2.51, quantile=0.925).feasible and not select([c], 2.49, quantile=0.925).feasible


def test_quantile_changes_the_choice() -> None:
    mid = Candidate("mid", 90.0, SubnetLatency(name="mid", p50_ms=1.0, p90_ms=1.5, p95_ms=3.0, p99_ms=6.0,
                                               mean_ms=1.2, cv=0.5, runs=50))
    small = cand("small", 80.0, 0.5)
    assert select([mid, small], 2.0, quantile=0.5).name == "mid"
    assert select([mid, small], 2.0, quantile=0.95).name == "small"


def test_ties_in_accuracy_go_to_lower_latency_then_name() -> None:
    a, b, c = cand("b-slow", 90.0, 2.0), cand("c-fast", 90.0, 1.0), cand("a-fast", 90.0, 1.0)
    assert select([a, b, c], 5.0).name == "a-fast"
    assert select([a, b], 5.0).name == "c-fast"


def test_infeasible_serves_fastest_with_tie_break() -> None:
    s = select([cand("x", 90.0, 2.0), cand("y", 70.0, 1.0), cand("z", 75.0, 1.0)], 0.1)
    assert (s.name, s.feasible) == ("z", False)


def test_slowdown_scales_predictions() -> None:
    assert select(PROFILE, 4.0, slowdown=1.0).name == "full"
    s = select(PROFILE, 4.0, slowdown=2.0)
    assert s.name == "small" and s.predicted_ms == pytest.approx(2.0)
    with pytest.raises(ValueError, match="slowdown"):
        select(PROFILE, 4.0, slowdown=float("nan"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, "5", None, True])
def test_bad_budget_rejected(bad: object) -> None:
    with pytest.raises(BudgetError, match="budget_ms"):
        select(PROFILE, bad)  # type: ignore[arg-type]


def test_selector_rejects_empty_and_bad_quantile() -> None:
    with pytest.raises(ValueError):
        Selector([], 0.95)
    with pytest.raises(ValueError):
        Selector(PROFILE, 1.0)


# ------------------------------------------------------------------ properties

@st.composite
def candidates(draw: st.DrawFn) -> list[Candidate]:
    n = draw(st.integers(1, 7))
    accs = draw(st.lists(st.sampled_from([60.0, 70.0, 80.0, 85.5, 90.0, 91.0]), min_size=n, max_size=n))
    p95s = draw(st.lists(st.sampled_from([0.3, 0.5, 1.0, 1.5, 2.0, 4.0, 8.0]), min_size=n, max_size=n))
    return [cand(f"s{i}", a, p) for i, (a, p) in enumerate(zip(accs, p95s, strict=True))]


budgets = st.floats(min_value=0.01, max_value=20.0, allow_nan=False, allow_infinity=False)
slowdowns = st.floats(min_value=0.25, max_value=8.0)


@settings(max_examples=300, deadline=None)
@given(candidates(), budgets, slowdowns)
def test_choice_is_most_accurate_feasible(cs: list[Candidate], budget: float, slowdown: float) -> None:
    s = select(cs, budget, 0.95, slowdown)
    pred = {c.name: c.latency.quantile_ms(0.95) * slowdown for c in cs}
    feasible = [c for c in cs if pred[c.name] <= budget]
    chosen = next(c for c in cs if c.name == s.name)
    assert s.feasible == bool(feasible)
    if feasible:
        assert pred[s.name] <= budget
        assert chosen.accuracy == max(c.accuracy for c in feasible)
        assert pred[s.name] == min(pred[c.name] for c in feasible if c.accuracy == chosen.accuracy)
    else:
        assert pred[s.name] == min(pred.values())
    assert math.isclose(s.predicted_ms, pred[s.name])


@settings(max_examples=300, deadline=None)
@given(candidates(), budgets, budgets, slowdowns)
def test_accuracy_is_monotone_in_budget(cs: list[Candidate], b1: float, b2: float, slowdown: float) -> None:
    lo, hi = sorted((b1, b2))
    acc = {c.name: c.accuracy for c in cs}
    s_lo, s_hi = select(cs, lo, 0.95, slowdown), select(cs, hi, 0.95, slowdown)
    if s_lo.feasible:
        assert s_hi.feasible and acc[s_hi.name] >= acc[s_lo.name]


@settings(max_examples=200, deadline=None)
@given(candidates(), budgets, slowdowns)
def test_precomputed_choose_matches_select(cs: list[Candidate], budget: float, slowdown: float) -> None:
    sel = Selector(cs, 0.95)
    i, ok = sel.choose(budget, slowdown)
    s = select(cs, budget, 0.95, slowdown)
    assert (cs[i].name, ok) == (s.name, s.feasible)
