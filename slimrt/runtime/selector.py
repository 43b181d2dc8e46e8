"""The pure selection rule: the most accurate sub-net whose predicted latency fits the budget.

``predicted = latency.quantile_ms(quantile) * slowdown``. Among the sub-nets that fit, the most accurate wins;
ties go to the lower predicted latency, then to the name. When none fits, the fastest is served (ties: the more
accurate, then the name) and the selection says ``feasible=False``.

:class:`Selector` precomputes the order once so the runtime can re-select on every call in a few hundred
nanoseconds; :func:`select` is the same rule as one pure function.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from slimrt.errors import BudgetError
from slimrt.schema import SubnetLatency

__all__ = ["Candidate", "Selection", "Selector", "select", "check_budget", "check_slowdown"]


@dataclass(frozen=True)
class Candidate:
    """A sub-net as the selector sees it: name, accuracy (percent) and latency on this device."""

    name: str
    accuracy: float
    latency: SubnetLatency


@dataclass(frozen=True)
class Selection:
    """The chosen sub-net, its predicted latency (ms) and whether it fits the budget."""

    name: str
    index: int
    predicted_ms: float
    feasible: bool


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


def check_slowdown(slowdown: float) -> float:
    """``slowdown`` as a float; ValueError unless positive and finite."""
    s = float(slowdown)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"slowdown must be a positive finite factor, got {slowdown!r}")
    return s


class Selector:
    """Precomputed selection over fixed candidates and quantile.

    Args:
        candidates: the sub-nets (any order; indices refer to this order).
        quantile: latency quantile used for predictions (0 < q < 1).
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
        n = range(len(self.candidates))
        # Preference order: most accurate first, then faster, then name.
        self.order = sorted(n, key=lambda i: (-self.candidates[i].accuracy, self.base_ms[i], self.candidates[i].name))
        self.fastest = min(n, key=lambda i: (self.base_ms[i], -self.candidates[i].accuracy, self.candidates[i].name))
        self._pairs = [(i, self.base_ms[i]) for i in self.order]

    def choose(self, budget_ms: float, slowdown: float = 1.0) -> tuple[int, bool]:
        """(index, feasible) for an already validated budget and slowdown (hot path: no checks)."""
        for i, base in self._pairs:
            if base * slowdown <= budget_ms:
                return i, True
        return self.fastest, False

    def select(self, budget_ms: float, slowdown: float = 1.0) -> Selection:
        """Validated :meth:`choose` returning a :class:`Selection`."""
        b = check_budget(budget_ms)
        s = check_slowdown(slowdown)
        i, ok = self.choose(b, s)
        return Selection(self.candidates[i].name, i, self.base_ms[i] * s, ok)


def select(
    candidates: Sequence[Candidate], budget_ms: float, quantile: float = 0.95, slowdown: float = 1.0
) -> Selection:
    """The most accurate candidate whose ``quantile_ms(quantile) * slowdown <= budget_ms``; else the fastest.

    Raises:
        BudgetError: ``budget_ms`` is NaN, infinite, zero or negative.
    """
    b = check_budget(budget_ms)
    return Selector(candidates, quantile).select(b, slowdown)
