"""Online adaptation: a robust slowdown estimate and a hysteresis controller over the pure selector.

Each call yields ``r = log(observed_ms / profiled_p50_ms)`` of the sub-net that ran. Two robust views of the
recent ``r``:

* *slow*: the larger of the median of the last ``window`` values and the 90th percentile of
  ``log(observed / profiled_p90)`` over the same window. The first is the scale of the whole distribution, the
  second catches a tail that grows faster than the median (CPU contention adds scheduler delays to some calls
  only), which matters because selection uses a high quantile. Both windows start full of zeros (the prior "the
  profile is right"), so a few early outliers cannot move them.
* *fast*: the minimum of the last ``fast_window`` values, i.e. "every one of the last k calls was at least this
  much slower". It counts only when it exceeds the sub-net's own profiled spread (``p95 / p50``): under the
  profiled distribution k calls in a row above p95 happen with probability 0.05**k, so noise the profile already
  covers does not trigger it, while a real slowdown does within k calls.

The slowdown factor is ``exp(max(slow, fast))`` (clamped). Stepping down is immediate once the active sub-net's
prediction exceeds the budget; stepping up needs the better sub-net to fit ``budget * up_margin`` for
``up_patience`` consecutive calls, and a step-up undone within ``up_patience`` calls doubles the patience (up to
``max_patience``), so a device that slows only the bigger sub-net cannot make the runtime flap. That backoff is
kept only while it is evidence of such a device: when the last failed step-up was taken while some estimate exceeded
``clear_slowdown`` (the device was known to be slow: a storm), the patience goes back to ``up_patience`` once every
estimate has been clear for ``window`` calls in a row, so a storm's backoff cannot keep the runtime on a small
sub-net for up to ``max_patience`` calls after the storm. Everything here is pure Python with no clock: tests feed
synthetic observations.

Thread counts: when the candidates are (sub-net, threads) pairs, the controller keeps one estimator per thread
count (contention slows multi-threaded sessions far more) and selects with every count's own factor. A count that
is not being served gets no observations, so its estimate would stay at whatever a storm left (the stale
prediction that keeps the runtime off the faster variant forever): an estimate not refreshed for ``stale_calls``
calls is lowered to what the served count shows now (its estimate, or 1.0 if lower), never raised. Under
contention that slows every count the stale ones thus stay high, and the runtime steps down to smaller sub-nets
instead of probing a count reset to 1.0; when only the served count is spared, the others come back to 1.0 and a
probe of them is seen within ``fast_window`` calls, the doubling patience keeping such probes rare. Once the device
is quiet, every prediction is back to the profile within ``window + stale_calls`` calls.

Budget margin (a miss guard): the slowdown views describe the typical call and a 90th percentile; on a CPU shared
with other processes a few calls in a hundred are preempted for a scheduler slice (several ms), a tail no window of
32 calls sees, so a sub-net whose prediction fits can still miss the budget on several percent of its calls. The
controller therefore also counts the misses it did not predict: calls over the budget whose prediction fitted, and
that the fastest candidate would have met (its profiled p50 as much slower; spikes no sub-net absorbs do not count).
Misses in a row count once (a level shift, which the slowdown views follow within ``fast_window`` calls). More than
``miss_allowance`` of them within ``miss_window`` calls multiply a margin by ``margin_step`` (selection then fits
``budget / margin``); every span of ``hold`` calls with at most ``miss_allowance`` of them divides it by
``margin_step`` again, down to 1.0. ``hold`` starts at ``margin_hold`` and doubles (up to ``max_hold``) when a
raise follows a step down within one span, so a lasting tail is probed more rarely, and halves again after each step
down that held; the margin left by a short burst comes down within ``margin_hold`` calls per step. Like a congestion
window, it needs no model of the tail: it reacts to the misses themselves.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass

from slimrt.runtime.selector import Selector

__all__ = ["AdaptConfig", "SlowdownEstimator", "Controller"]


@dataclass(frozen=True)
class AdaptConfig:
    """Knobs of the online adaptation (defaults suit 0.1-100 ms calls)."""

    window: int = 32
    fast_window: int = 3
    up_margin: float = 0.9
    up_patience: int = 16
    max_patience: int = 1024
    min_slowdown: float = 0.25
    max_slowdown: float = 64.0
    stale_calls: int = 64
    miss_window: int = 100
    miss_allowance: int = 1
    margin_step: float = 1.25
    margin_hold: int = 128
    max_hold: int = 256
    max_margin: float = 4.0
    clear_slowdown: float = 1.1

    def __post_init__(self) -> None:
        if (self.window < 1 or self.fast_window < 1 or self.up_patience < 1 or self.max_patience < self.up_patience
                or self.stale_calls < 1 or self.miss_window < 1 or self.miss_allowance < 0 or self.margin_hold < 1
                or self.max_hold < self.margin_hold):
            raise ValueError(f"invalid adaptation windows: {self}")
        if not (self.margin_step > 1 and self.max_margin >= 1):
            raise ValueError(f"need margin_step > 1 and max_margin >= 1, got {self.margin_step}/{self.max_margin}")
        if not self.clear_slowdown >= 1:
            raise ValueError(f"clear_slowdown must be >= 1, got {self.clear_slowdown}")
        if not (0 < self.up_margin <= 1):
            raise ValueError(f"up_margin must lie in (0, 1], got {self.up_margin}")
        if not (0 < self.min_slowdown <= 1 <= self.max_slowdown):
            raise ValueError(f"need 0 < min_slowdown <= 1 <= max_slowdown, got {self.min_slowdown}/{self.max_slowdown}")


class SlowdownEstimator:
    """Robust estimate of how much slower than profiled the device currently runs (1.0 = as profiled)."""

    def __init__(self, config: AdaptConfig | None = None) -> None:
        self.config = config or AdaptConfig()
        self._lo = math.log(self.config.min_slowdown)
        self._hi = math.log(self.config.max_slowdown)
        self.reset()

    def reset(self, prior: float = 1.0) -> None:
        """Forget every observation: the slowdown is back to ``prior`` (1.0: as profiled), held by a full window."""
        n = self.config.window
        r = min(max(math.log(prior), self._lo), self._hi) if prior > 0 else 0.0
        self._window: deque[float] = deque([r] * n)
        self._sorted: list[float] = [r] * n
        self._twindow: deque[float] = deque([r] * n)
        self._tsorted: list[float] = [r] * n
        self._recent: deque[float] = deque(maxlen=self.config.fast_window)
        self._mid = n // 2
        self._even = n % 2 == 0
        self._q90 = int(0.9 * (n - 1))  # never the maximum (n >= 2): one outlier cannot move it
        self.value = math.exp(r)
        self.count = 0

    def update(self, observed_ms: float, profiled_ms: float, spread: float = 1.0, tail_ms: float | None = None
               ) -> float:
        """Add one call that took ``observed_ms`` on a sub-net profiled at ``profiled_ms`` (p50) and ``tail_ms``
        (p90; default: p50), whose profiled ``p95 / p50`` is ``spread``; return the new slowdown factor."""
        if not (observed_ms > 0 and profiled_ms > 0) or math.isinf(observed_ms):
            return self.value
        lo, hi = self._lo, self._hi
        r = min(max(math.log(observed_ms / profiled_ms), lo), hi)
        win, srt = self._window, self._sorted
        del srt[bisect_left(srt, win.popleft())]
        win.append(r)
        insort(srt, r)
        rt = r if tail_ms is None else min(max(math.log(observed_ms / tail_ms), lo), hi)
        twin, tsrt = self._twindow, self._tsorted
        del tsrt[bisect_left(tsrt, twin.popleft())]
        twin.append(rt)
        insort(tsrt, rt)
        recent = self._recent
        recent.append(r)
        self.count += 1
        m = self._mid
        est = 0.5 * (srt[m - 1] + srt[m]) if self._even else srt[m]
        tail = tsrt[self._q90]
        if tail > est:
            est = tail
        if len(recent) == recent.maxlen:
            fast = min(recent)
            if fast > est and fast > math.log(spread):
                est = fast
        self.value = math.exp(est)
        return self.value


class Controller:
    """Which candidate serves the next call: selector + slowdown estimates (one per thread count) + hysteresis.
    Not thread-safe (the runtime serializes :meth:`observe` and :meth:`set_budget` under its lock).

    ``decision`` is the tuple ``(active, feasible, budget_ms)``, replaced as a whole, so a caller reading it
    without the lock sees one consistent decision (never a new budget next to an old feasibility).
    """

    def __init__(
        self, selector: Selector, budget_ms: float, config: AdaptConfig | None = None, adapt: bool = True,
        reference_ms: list[float] | None = None,
    ) -> None:
        self.selector = selector
        self.config = config or AdaptConfig()
        self.adapt = adapt
        self.group = selector.group
        self.estimators = [SlowdownEstimator(self.config) for _ in selector.groups]
        self._seen = [0] * len(self.estimators)  # call count at each estimator's last observation
        self._calls = 0
        n = len(selector.candidates)
        self.rank = [0] * n
        for r, i in enumerate(selector.order):
            self.rank[i] = r
        self.reference_ms = reference_ms or [c.latency.p50_ms for c in selector.candidates]
        self.spread = [c.latency.p95_ms / c.latency.p50_ms for c in selector.candidates]
        self.tail_ms = [c.latency.p90_ms for c in selector.candidates]
        self.budget_ms = budget_ms
        self.patience = self.config.up_patience
        self._up_count = 0
        self._since_up: int | None = None
        self._stable = 0
        self._up_clear = False  # whether every estimate was clear when the last step-up was taken
        self._sticky = False  # whether the last failed step-up was taken on a clear device (keep its backoff)
        self._clear_run = 0  # calls in a row with every estimate clear
        self.switches = 0
        self.margin = 1.0
        fast = self.reference_ms[selector.fastest]
        self._shrink = [min(1.0, fast / r) if r > 0 else 1.0 for r in self.reference_ms]
        self._misses: deque[int] = deque()
        self._guard_calls = 0
        self._missed_last = False
        self._span_start = 0  # call count where the current hold span began (a margin change starts a new one)
        self._span_misses = 0
        self._last_lower = self._last_raise = -(10**9)
        self.hold = self.config.margin_hold  # calls per step down; doubles after a premature one
        #: whether every estimate is at most ``clear_slowdown`` (the device runs as profiled); False when not adapting
        self.clear = adapt
        self.active, self.feasible = selector.choose(budget_ms, 1.0)
        self.decision = (self.active, self.feasible, budget_ms)

    @property
    def estimator(self) -> SlowdownEstimator:
        """The estimator of the active candidate's thread count."""
        return self.estimators[self.group[self.active]]

    @property
    def slowdown(self) -> float:
        """Slowdown estimate of the active candidate's thread count (1.0 when not adapting)."""
        return self.estimators[self.group[self.active]].value if self.adapt else 1.0

    @property
    def slowdowns(self) -> dict[int | None, float]:
        """Slowdown estimate per thread count."""
        return {t: (e.value if self.adapt else 1.0) for t, e in zip(self.selector.groups, self.estimators,
                                                                   strict=True)}

    def predicted_ms(self, index: int) -> float:
        s = self.estimators[self.group[index]].value if self.adapt else 1.0
        return self.selector.base_ms[index] * s

    def _choose(self, budget_ms: float) -> tuple[int, bool]:
        if len(self.estimators) == 1:
            return self.selector.choose(budget_ms, self.slowdown)
        if not self.adapt:
            return self.selector.choose(budget_ms, 1.0)
        return self.selector.choose_each(budget_ms, [e.value for e in self.estimators])

    def set_budget(self, budget_ms: float) -> int:
        """New (validated) budget: re-select at once, in either direction (an explicit request needs no hysteresis).
        The margin is kept (it describes the device), the misses counted against the old budget are not."""
        self.budget_ms = budget_ms
        self._misses.clear()
        target, ok = self._choose(budget_ms / self.margin)
        self._switch(target, ok or self.predicted_ms(target) <= budget_ms, up=False)
        self._up_count = 0
        self.decision = (self.active, self.feasible, budget_ms)
        return self.active

    def _switch(self, index: int, feasible: bool, up: bool) -> None:
        if index != self.active:
            self.switches += 1
            self.active = index
            self._since_up = 0 if up else None
        self.feasible = feasible

    def _forget_stale(self, g: int) -> None:
        """Lower the estimate of every thread count other than ``g`` not observed for ``stale_calls`` calls to what
        the device shows now: ``g``'s own estimate, or 1.0 if that is lower. While ``g`` is slowed too the stale
        estimates stay as high (a count reset to 1.0 under contention that slows every count would be probed and
        left again and again); once the device is quiet they follow ``g`` down to the profile."""
        self._calls += 1
        self._seen[g] = self._calls
        limit = self._calls - self.config.stale_calls
        now = max(self.estimators[g].value, 1.0)
        for k, e in enumerate(self.estimators):
            if k != g and self._seen[k] < limit and e.value > now * 1.0001:
                e.reset(now)

    def observe(self, index: int, observed_ms: float, missed: bool | None = None) -> int:
        """Record that candidate ``index`` took ``observed_ms`` (``missed``: whether the whole call exceeded the
        budget; default ``observed_ms > budget``); return the candidate for the next call."""
        if not self.adapt:
            return self.active
        g = self.group[index]
        fitted = self.estimators[g].value * self.selector.base_ms[index] <= self.budget_ms  # predicted before the call
        self.estimators[g].update(observed_ms, self.reference_ms[index], self.spread[index], self.tail_ms[index])
        if len(self.estimators) > 1:
            self._forget_stale(g)
        self.clear = self._all_clear()
        missed = observed_ms > self.budget_ms if missed is None else missed
        # a miss counts only if it was not predicted (a predicted one is the estimator's business: a storm where
        # nothing fits) and the fastest candidate, as much slower, would have fitted: never for spikes that no
        # sub-net absorbs (stepping down would cost accuracy and buy nothing)
        self._guard(missed and fitted and observed_ms * self._shrink[index] <= self.budget_ms)
        if self.patience > self.config.up_patience and not self._sticky:
            self._forget_backoff()
        active = self._step()
        self.decision = (active, self.feasible, self.budget_ms)
        return active

    def _all_clear(self) -> bool:
        c = self.config.clear_slowdown
        return all(e.value <= c for e in self.estimators)

    def _forget_backoff(self) -> None:
        """Back to ``up_patience`` once every estimate has been clear for ``window`` calls in a row, when the
        patience grew from step-ups that failed while the device was known to be slow (a storm that has ended,
        whose backoff would keep the runtime on a small sub-net for up to ``max_patience`` calls)."""
        if self._all_clear():
            self._clear_run += 1
            if self._clear_run >= self.config.window:
                self.patience = self.config.up_patience
                self._clear_run = 0
        else:
            self._clear_run = 0

    def _guard(self, missed: bool) -> None:
        """Count this call toward the miss guard; raise or lower the budget margin (module docstring)."""
        cfg = self.config
        self._guard_calls = n = self._guard_calls + 1
        run_on, self._missed_last = self._missed_last, missed
        if missed and not run_on:
            self._span_misses += 1
            misses = self._misses
            misses.append(n)
            while misses[0] <= n - cfg.miss_window:
                misses.popleft()
            if len(misses) > cfg.miss_allowance:
                # a raise soon after a step down means the step down was premature: hold twice as long next time
                # (like the up-switch patience); a raise long after starts again from margin_hold
                soon = n - self._last_lower <= self.hold
                self.hold = min(2 * self.hold, cfg.max_hold) if soon else cfg.margin_hold
                self.margin = min(self.margin * cfg.margin_step, cfg.max_margin)
                self._last_raise = n
                misses.clear()  # the next step needs fresh misses, seen under the new margin
                self._span_start, self._span_misses = n, 0
        if self.margin > 1.0 and n - self._span_start >= self.hold:
            if self._span_misses <= cfg.miss_allowance:  # a span at or below the tolerated rate: one step down
                if self._last_lower > self._last_raise:  # the last step down held: the device is quieting
                    self.hold = max(cfg.margin_hold, self.hold // 2)
                self.margin = max(1.0, self.margin / cfg.margin_step)
                self._last_lower = n
            self._span_start, self._span_misses = n, 0

    def _step(self) -> int:
        active = self.active
        budget = self.budget_ms / self.margin
        if self._since_up is not None:
            self._since_up += 1
            if self._since_up > self.config.up_patience:
                self._since_up = None
        if self.predicted_ms(active) > budget:  # the active candidate no longer fits: step down now
            target, ok = self._choose(budget)
            if self._since_up is not None and self.rank[target] > self.rank[active]:
                self.patience = min(2 * self.patience, self.config.max_patience)  # a step-up that did not hold
                self._stable = 0
                self._sticky = self._up_clear  # taken on a clear device: only the bigger one slows, keep backing off
                self._clear_run = 0
            self._up_count = 0
            self._switch(target, ok or self.predicted_ms(target) <= self.budget_ms, up=False)
            return self.active
        self.feasible = True
        up, _ = self._choose(budget * self.config.up_margin)
        if self.rank[up] < self.rank[active]:
            self._up_count += 1
            if self._up_count >= self.patience:
                self._up_count = 0
                self._up_clear = self._all_clear()
                self._switch(up, True, up=True)
        else:
            self._up_count = 0
        self._stable += 1
        if self._stable >= 4 * self.config.max_patience and self.patience > self.config.up_patience:
            self.patience = max(self.config.up_patience, self.patience // 2)
            self._stable = 0
        return self.active
