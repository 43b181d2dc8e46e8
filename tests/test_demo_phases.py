"""The demo's runtime driver on a real (synthetic, tiny) artifact: budgets, background load, what served."""

import warnings

import numpy as np

from slimrt import SlimRuntime
from slimrt.demo import Phase, plan_phases, run_phase


def test_plan_phases_budgets_follow_latencies():
    phases = plan_phases([1.0, 0.5, 0.2], seconds=1.0)
    budgets = [p.budget_ms for p in phases]
    assert budgets[0] == 1.5 and budgets[2] < budgets[1] < budgets[0]
    assert any(p.load > 0 for p in phases)
    assert phases[-1].budget_ms < 0.2  # an impossible budget is part of the tour
    # A targeted budget lies half-way between the target's p95 and the next slower sub-net's: it fits, that does not.
    assert budgets[1] == 0.75 and budgets[2] == 0.35
    assert all(p.short for p in phases)


def test_plan_phases_when_a_smaller_subnet_is_not_faster():
    phases = plan_phases([1.0, 1.1, 0.5], seconds=1.0)
    mid = phases[1].budget_ms
    assert mid >= 1.1  # sub-net 1 (slower than the full one) needs a budget the full one fits too


def test_run_phase_serves_within_budget_and_counts(synthetic_artifact):
    x = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    labels = np.zeros(8, dtype=np.int64)
    with SlimRuntime(synthetic_artifact, budget_ms=100.0, device="cpu", measure_runs=30) as rt:
        p95 = [s.latency.p95_ms for s in rt.subnets]
        roomy = run_phase(rt, Phase(title="roomy", budget_ms=100.0, seconds=0.3), x, labels)
        assert roomy.served == {rt.subnets[0].name: roomy.calls} and roomy.calls > 10
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the demo counts infeasible calls instead of printing warnings
            tight = run_phase(rt, Phase(title="impossible", budget_ms=min(p95) * 1e-3, seconds=0.2), x, labels)
        # when nothing fits, the sub-net predicted fastest serves (by the profile measured at load: under CPU load
        # that need not be the smallest one)
        assert set(tight.served) == {rt.subnets[int(np.argmin(p95))].name}
        assert tight.infeasible == tight.calls and tight.within_budget == 0.0
