"""The pure selection rule: the most accurate sub-net whose predicted latency fits the budget.

``predicted = latency.quantile_ms(quantile) * slowdown``. Among the sub-nets that fit, the most accurate wins;
ties go to the lower predicted latency, then to the name. When none fits, the fastest is served (ties: the more
accurate, then the name) and the selection says ``feasible=False``.

On CPU a candidate is a (sub-net, thread count) pair: the same sub-net may appear once per thread count, each with
its own latency. The slowdown may then differ per thread count (contention slows a 2-thread session waiting for
its second core far more than a 1-thread one): :meth:`Selector.choose_each` takes one factor per thread count.

:class:`Selector` precomputes the order once so the runtime can re-select on every call in a few hundred
nanoseconds; :func:`select` is the same rule as one pure function.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slimrt.errors import BudgetError
from slimrt.schema import SubnetLatency

__all__ = ["Candidate", "Selection", "Selector", "select", "check_budget", "check_slowdown"]


@dataclass(frozen=True)
class Candidate:
    """A sub-net as the selector sees it: name, accuracy (percent), latency on this device and the intra-op thread
    count it runs with (None: the backend's default)."""

    name: str
    accuracy: float
    latency: SubnetLatency
    threads: int | None = None


@dataclass(frozen=True)
class Selection:
    """The chosen sub-net and thread count, its predicted latency (ms) and whether it fits the budget."""

    name: str
    index: int
    predicted_ms: float
    feasible: bool
    threads: int | None = None


def check_budget(budget_ms: float) -> float:
    """``budget_ms`` as a float; BudgetError unless it is a positive finite number of milliseconds."""
    if isinstance(budget_ms, bool) or not isinstance(budget_ms, numbers.Real):
        raise BudgetError(f"budget_ms must be a positive number of milliseconds, got {budget_ms!r}")
    try:
        b = float(budget_ms)
    except OverflowError:
        raise BudgetError(f"budget_ms must be a positive finite number of milliseconds, got an integer of "
                          f"{len(str(abs(int(budget_ms))))} digits") from None
    if not math.isfinite(b) or b <= 0:
        raise BudgetError(f"budget_ms must be a positive finite number of milliseconds, got {budget_ms!r}")
    return b


def _thread_key(t: int | None) -> tuple[int, int]:
    return (0, 0) if t is None else (1, t)


def check_slowdown(slowdown: float) -> float:
    """``slowdown`` as a float; ValueError unless positive and finite."""
    s = float(slowdown)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"slowdown must be a positive finite factor, got {slowdown!r}")
    return s


class Selector:
    """Precomputed selection over fixed candidates and quantile.

    Args:
        candidates: the sub-nets or (sub-net, threads) pairs (any order; indices refer to this order).
        quantile: latency quantile used for predictions (0 < q < 1).

    Attributes:
        groups: the distinct thread counts of the candidates (None first, then ascending).
        group: per candidate, the index of its thread count in ``groups``.
    """

    def __init__(self, candidates: Sequence[Candidate], quantile: float) -> None:
        if not candidates:
            raise ValueError("need at least one candidate sub-net")
        if not (0 < quantile < 1):
            raise ValueError(f"quantile must lie strictly between 0 and 1, got {quantile}")
        for c in candidates:
            if not math.isfinite(c.accuracy):
                raise ValueError(f"sub-net {c.name!r} has a non-finite accuracy {c.accuracy}")
        self.candidates = list(candidates)
        self.quantile = quantile
        self.base_ms = [c.latency.quantile_ms(quantile) for c in self.candidates]
        cs = self.candidates
        self.groups: list[int | None] = sorted({c.threads for c in cs}, key=_thread_key)
        self.group = [self.groups.index(c.threads) for c in cs]
        n = range(len(cs))
        # Preference order: most accurate first, then faster, then name, then thread count.
        self.order = sorted(n, key=lambda i: (-cs[i].accuracy, self.base_ms[i], cs[i].name, _thread_key(cs[i].threads)))
        self._pairs = [(i, self.base_ms[i]) for i in self.order]
        self._triples = [(i, self.base_ms[i], self.group[i]) for i in self.order]
        self._by_speed = sorted(n, key=lambda i: (self.base_ms[i], -cs[i].accuracy, cs[i].name,
                                                  _thread_key(cs[i].threads)))
        self.fastest = self._by_speed[0]

    def choose(self, budget_ms: float, slowdown: float = 1.0) -> tuple[int, bool]:
        """(index, feasible) for an already validated budget and slowdown (hot path: no checks)."""
        for i, base in self._pairs:
            if base * slowdown <= budget_ms:
                return i, True
        return self.fastest, False

    def choose_each(self, budget_ms: float, slowdowns: Sequence[float]) -> tuple[int, bool]:
        """:meth:`choose` with one slowdown per thread count (``slowdowns[k]`` scales ``groups[k]``); when nothing
        fits, the candidate with the lowest scaled prediction is served."""
        for i, base, g in self._triples:
            if base * slowdowns[g] <= budget_ms:
                return i, True
        best = min(self._by_speed, key=lambda i: self.base_ms[i] * slowdowns[self.group[i]])
        return best, False

    def select(self, budget_ms: float, slowdown: float | Mapping[int | None, float] = 1.0) -> Selection:
        """Validated :meth:`choose` (or :meth:`choose_each` for a thread count -> slowdown mapping)."""
        b = check_budget(budget_ms)
        if isinstance(slowdown, Mapping):
            f = [check_slowdown(slowdown.get(t, 1.0)) for t in self.groups]
            i, ok = self.choose_each(b, f)
            s = f[self.group[i]]
        else:
            s = check_slowdown(slowdown)
            i, ok = self.choose(b, s)
        c = self.candidates[i]
        return Selection(c.name, i, self.base_ms[i] * s, ok, c.threads)


def select(
    candidates: Sequence[Candidate], budget_ms: float, quantile: float = 0.95,
    slowdown: float | Mapping[int | None, float] = 1.0,
) -> Selection:
    """The most accurate candidate whose ``quantile_ms(quantile) * slowdown <= budget_ms``; else the fastest.

    ``slowdown`` may map thread counts to factors (missing ones: 1.0) when candidates differ in threads.

    Raises:
        BudgetError: ``budget_ms`` is NaN, infinite, zero or negative.
    """
    b = check_budget(budget_ms)
    return Selector(candidates, quantile).select(b, slowdown)
