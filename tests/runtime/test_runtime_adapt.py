"""Online adaptation, fed synthetic observations (no clock): steps down under slowdown, back up after recovery,
ignores outliers, and does not flap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slimrt.runtime.adapt import AdaptConfig, Controller, SlowdownEstimator
from slimrt.runtime.selector import Candidate, Selector
from slimrt.schema import SubnetLatency

NAMES = ["full", "mid", "small"]
P50 = {"full": 2.0, "mid": 1.0, "small": 0.5}


def lat(name: str) -> SubnetLatency:
    p50 = P50[name]
    return SubnetLatency(name=name, p50_ms=p50, p90_ms=1.1 * p50, p95_ms=1.2 * p50, p99_ms=1.4 * p50, mean_ms=p50,
                         cv=0.05, runs=100)


def controller(budget: float = 3.0, **cfg: int | float) -> Controller:
    cands = [Candidate(n, a, lat(n)) for n, a in zip(NAMES, [92.0, 90.0, 85.0], strict=True)]
    return Controller(Selector(cands, 0.95), budget, AdaptConfig(**cfg))  # type: ignore[arg-type]


def run(ctl: Controller, factor: dict[str, float] | float, calls: int, rng: np.random.Generator | None = None,
        noise: float = 0.0) -> list[str]:
    """Feed ``calls`` observations: each call takes p50 * factor(sub-net) * (1 + noise)."""
    served = []
    for _ in range(calls):
        name = NAMES[ctl.active]
        f = factor if isinstance(factor, float) else factor.get(name, 1.0)
        eps = 0.0 if rng is None else rng.uniform(-noise, noise)
        served.append(name)
        ctl.observe(ctl.active, P50[name] * f * (1 + eps))
    return served


def test_estimator_views() -> None:
    est = SlowdownEstimator(AdaptConfig(window=20, fast_window=3))
    for _ in range(20):
        est.update(1.0, 1.0, 1.2, 1.1)
    assert est.value == pytest.approx(1.0)
    est.update(50.0, 1.0, 1.2, 1.1)  # one outlier moves neither the median, the 90th percentile, nor min-of-3
    assert est.value == pytest.approx(1.0)
    est.update(2.0, 1.0, 2.5, 2.2)
    est.update(2.0, 1.0, 2.5, 2.2)
    assert est.value == pytest.approx(1.0)  # 2x is inside this sub-net's profiled spread (p95/p50 = 2.5): noise
    est.update(2.0, 1.0, 1.2, 1.1)
    assert est.value == pytest.approx(2.0)  # three calls in a row at >= 2x, beyond a 1.2 spread: fast view
    for _ in range(20):
        est.update(1.0, 1.0, 1.2, 1.1)
    assert est.value == pytest.approx(1.0)
    for _ in range(3):
        est.update(1e9, 1.0)
    assert est.value == pytest.approx(64.0)  # clamped to max_slowdown
    est.reset()
    assert est.value == 1.0 and est.count == 0


def test_estimator_tail_view_follows_the_p90() -> None:
    est = SlowdownEstimator(AdaptConfig(window=40, fast_window=3))
    for i in range(40):  # every 5th call 3x its p90 (20% of calls): the median is unmoved, the p90 is 3x
        est.update(3.0 * 1.1 if i % 5 == 0 else 1.0, 1.0, 1.2, 1.1)
    assert est.value == pytest.approx(3.0)


def test_estimator_ignores_invalid_observations() -> None:
    est = SlowdownEstimator()
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        assert est.update(bad, 1.0) == 1.0
    assert est.count == 0


def test_steady_device_never_switches() -> None:
    ctl = controller()
    served = run(ctl, 1.0, 500, np.random.default_rng(0), noise=0.1)
    assert set(served) == {"full"} and ctl.switches == 0


def test_steps_down_within_fast_window_and_back_up_after_recovery() -> None:
    ctl = controller(window=32, fast_window=3, up_patience=16)
    run(ctl, 1.0, 100)
    slow = run(ctl, 2.0, 100)  # everything 2x slower: full predicts 4.8 ms > 3, mid 2.4 ms fits
    assert slow[:3] == ["full"] * 3 and set(slow[3:]) == {"mid"}
    assert ctl.slowdown == pytest.approx(2.0)
    rec = run(ctl, 1.0, 200)
    first_full = rec.index("full")
    # Recovery is believed once the window's 90th percentile is back (~28 of 32 calls), then the patience (16) runs.
    assert 16 <= first_full <= 50
    assert set(rec[first_full:]) == {"full"}
    assert ctl.switches == 2


def test_rare_outlier_spikes_do_not_switch() -> None:
    # 2% of calls 20x slower: rarer than the 5% tail the selection quantile (0.95) allows for.
    ctl = controller()
    for i in range(2000):
        ctl.observe(ctl.active, P50["full"] * (20.0 if i % 50 == 0 else 1.0))
        assert NAMES[ctl.active] == "full"
    assert ctl.switches == 0


def test_frequent_spikes_inflate_the_tail_and_step_down() -> None:
    # 15% of calls 3x slower: the median stays at 1x, but the p95 is 3x -> the full sub-net no longer fits.
    ctl = controller()
    for i in range(200):
        ctl.observe(ctl.active, P50[NAMES[ctl.active]] * (3.0 if i % 7 == 0 else 1.0))
    assert NAMES[ctl.active] != "full" and ctl.switches >= 1


def _preempted(ctl: Controller, calls: int, every: int, extra_ms: float) -> list[tuple[str, bool]]:
    """Feed ``calls`` calls at their p50, every ``every``-th one ``extra_ms`` later (a scheduler slice lost to
    another process: additive, whichever sub-net runs); return (sub-net, within budget) per call."""
    out = []
    for k in range(calls):
        name = NAMES[ctl.active]
        ms = P50[name] + (extra_ms if k % every == every - 1 else 0.0)
        out.append((name, ms <= ctl.budget_ms))
        ctl.observe(ctl.active, ms)
    return out


def test_miss_guard_steps_down_under_a_preemption_tail_and_returns_when_it_ends() -> None:
    # 4% of calls lose 2 ms: the median and the 90th percentile stay at the profile, so the slowdown views keep
    # 'full' (p95 2.4 ms <= 3 ms), which then misses 4% of its calls; 'mid' (1 + 2 = 3 ms) absorbs the slice.
    off = controller(miss_allowance=10**6)  # the guard disabled: what the slowdown views alone do
    unguarded = _preempted(off, 2500, 25, 2.0)
    assert {n for n, _ in unguarded} == {"full"} and off.margin == 1.0
    assert sum(ok for _, ok in unguarded) / len(unguarded) == pytest.approx(0.96)
    ctl = controller()
    guarded = _preempted(ctl, 2500, 25, 2.0)
    served = [n for n, _ in guarded]
    first_mid = served.index("mid")
    assert first_mid <= 100  # two counted misses within miss_window calls raise the margin (twice: 2.4 ms fits 3/1.25)
    # like a congestion window, the margin decays after margin_hold quiet calls and 'full' is probed again: a
    # sawtooth that keeps misses below 1%, most calls on 'mid'
    late = guarded[first_mid:]
    assert sum(ok for _, ok in late) / len(late) >= 0.99
    assert served.count("mid") > 0.7 * len(served)
    # the tail ends: the margin comes down one step per hold (<= max_hold, halving after each step that held),
    # then the patience runs
    assert ctl.hold > ctl.config.margin_hold  # under the lasting tail, probes of 'full' became rarer
    steps = math.ceil(math.log(ctl.margin) / math.log(ctl.config.margin_step) - 1e-9)
    quiet = run(ctl, 1.0, 3000)
    assert ctl.margin == 1.0 and quiet[-1] == "full"
    assert quiet.index("full") <= steps * ctl.config.max_hold + 2 * ctl.config.up_patience


def test_miss_guard_ignores_spikes_no_subnet_absorbs_and_predicted_misses() -> None:
    # 4% of calls lose 20 ms: even 'small' would miss, so stepping down buys nothing
    ctl = controller()
    _preempted(ctl, 2000, 25, 20.0)
    assert ctl.margin == 1.0 and ctl.switches == 0
    # a budget below every prediction: each call misses, as predicted; the margin stays (the estimator's business)
    ctl = controller(budget=0.3)
    run(ctl, 1.0, 500)
    assert ctl.margin == 1.0 and not ctl.feasible


def test_budget_change_keeps_the_margin() -> None:
    ctl = controller()
    _preempted(ctl, 500, 25, 2.0)
    m = ctl.margin
    assert m > 1.0
    assert NAMES[ctl.set_budget(100.0)] == "full" and ctl.margin == m
    assert NAMES[ctl.set_budget(2.9)] == "mid"  # 'full' p95 2.4 ms fits 2.9 ms, not 2.9 / margin


def test_noise_inside_the_profile_does_not_step_down() -> None:
    # Budget 17% above full's p95 (2.4 ms); +-10% noise stays inside the profiled spread (p95/p50 = 1.2).
    ctl = controller(budget=2.8)
    served = run(ctl, 1.0, 3000, np.random.default_rng(1), noise=0.1)
    assert set(served) == {"full"} and ctl.switches == 0


def test_no_flapping_near_the_budget() -> None:
    # Budget 4% above full's p95: the median estimate may cross it now and then; hysteresis must hold.
    for seed in range(5):
        ctl = controller(budget=2.5)
        run(ctl, 1.0, 3000, np.random.default_rng(seed), noise=0.1)
        assert ctl.switches <= 2


def test_no_flapping_when_only_the_big_subnet_slows() -> None:
    # Contention that hurts only 'full': on 'mid' the device looks healthy, tempting a step-up every time.
    ctl = controller(up_patience=16, max_patience=1024)
    run(ctl, {"full": 1.6, "mid": 1.0}, 3000)
    assert ctl.patience == 1024  # every failed step-up doubled the patience
    before = ctl.switches
    served = run(ctl, {"full": 1.6, "mid": 1.0}, 3000)
    naive = 2 * 3000 // (16 + 16 + 3)  # switches of a controller without the backoff: one probe every ~35 calls
    assert ctl.switches - before <= 6 < naive
    assert served.count("full") <= 3 * 3  # each probe of 'full' costs at most fast_window calls


def test_backoff_from_a_storm_is_forgotten_once_the_device_is_quiet() -> None:
    # A storm slows everything 2x and the bigger sub-nets 4x: each step-up from 'small' fails, taken while the device
    # was known to be slow, and doubles the patience to its maximum. Once quiet, that backoff must not keep the
    # runtime on 'small' for max_patience calls: after a window of clear estimates the patience is back to 16.
    ctl = controller(up_patience=16, max_patience=1024, window=32)
    storm = run(ctl, {"full": 4.0, "mid": 4.0, "small": 2.0}, 3000)
    assert ctl.patience == 1024 and storm.count("mid") >= 8  # the probes did fail
    quiet = run(ctl, 1.0, 1000)
    # clear within the window (32), a window of clear calls (32), the patience (16), and a step up per rank
    assert quiet.index("full") <= 2 * 32 + 2 * 16 + 8 < 1024
    assert ctl.patience == 16 and set(quiet[-500:]) == {"full"}


def test_budget_change_is_immediate_both_ways() -> None:
    ctl = controller(budget=3.0)
    assert NAMES[ctl.active] == "full"
    assert NAMES[ctl.set_budget(1.0)] == "small"
    assert NAMES[ctl.set_budget(2.0)] == "mid"
    assert NAMES[ctl.set_budget(100.0)] == "full"
    assert NAMES[ctl.set_budget(0.1)] == "small" and not ctl.feasible
    assert ctl.switches == 4


def test_adapt_off_keeps_the_static_choice() -> None:
    cands = [Candidate(n, a, lat(n)) for n, a in zip(NAMES, [92.0, 90.0, 85.0], strict=True)]
    ctl = Controller(Selector(cands, 0.95), 3.0, adapt=False)
    served = run(ctl, 5.0, 100)
    assert set(served) == {"full"} and ctl.slowdown == 1.0 and ctl.switches == 0


def test_bad_config_rejected() -> None:
    with pytest.raises(ValueError):
        AdaptConfig(up_margin=1.5)
    with pytest.raises(ValueError, match="margin_step"):
        AdaptConfig(margin_step=1.0)
    with pytest.raises(ValueError, match="windows"):
        AdaptConfig(miss_window=0)
    with pytest.raises(ValueError):
        AdaptConfig(window=0)


def test_clear_flag_follows_every_estimate() -> None:
    # what the runtime reads to serve its clear (spinning-during-the-run) sessions: clear only while every estimate
    # is at most clear_slowdown, and again once the device is as profiled
    ctl = controller(budget=1e6)
    assert ctl.clear
    run(ctl, 1.05, 40)
    assert ctl.clear  # inside clear_slowdown (1.1)
    run(ctl, 1.5, 3)
    assert not ctl.clear and ctl.slowdown == pytest.approx(1.5)  # three calls in a row: the fast view
    run(ctl, 1.0, 40)
    assert ctl.clear and ctl.slowdown == pytest.approx(1.0)
    off = Controller(ctl.selector, 1e6, adapt=False)
    assert not off.clear  # no estimate: nothing says the device is clear
