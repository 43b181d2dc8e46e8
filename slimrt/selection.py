"""Choosing among sub-nets, the same way everywhere (torch-free): the Pareto front of cost vs accuracy (bench plots,
search re-selection), re-selection of the final K candidates, and their names (``m100``, ``m55``, ...)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from slimrt.errors import ConfigError

__all__ = ["pareto_front", "reselect", "subnet_names"]


def pareto_front(cost: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Indices of the Pareto-optimal points (lower cost, higher accuracy), cheapest first (ties by index).

    ``cost`` is cost, MACs or anything else to minimise. A point is on the front when no other point costs at
    most as much and is at least as accurate while being strictly better in one of the two. Exact duplicates are
    all kept.
    """
    if len(cost) != len(accuracy):
        raise ValueError(f"cost and accuracy must have the same length, got {len(cost)} and {len(accuracy)}")
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -accuracy[i]))
    front: list[int] = []
    best = -math.inf
    best_cost = math.nan
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
            best_cost = cost[i]
        elif accuracy[i] == best and cost[i] == best_cost:
            front.append(i)
    return front


def reselect(
    macs: Sequence[float],
    accs: Sequence[float],
    k: int,
    *,
    targets: Sequence[float] | None = None,
    full_macs: float | None = None,
    pareto: bool = True,
    keep_largest: bool = False,
) -> list[int]:
    """Pick ``k`` distinct candidates, largest first.

    With ``targets`` (fractions of ``full_macs``): for each target the most accurate candidate within that MACs
    budget (the smallest candidate when none fits). Otherwise with ``pareto``: the Pareto front, thinned to the
    points nearest ``k`` MACs levels spread evenly between its largest and smallest point (filled up from the
    other candidates when the front is short). Without ``pareto``: ``k`` candidates evenly spaced by index.

    ``keep_largest``: the largest candidate (the full network of a search) is always the first pick, even when a
    smaller one is as accurate (with ``targets`` it takes the largest target; on the Pareto front it is added as the
    top point, so the spread still starts from it). That keeps the top of the latency range a family can serve.
    """
    n = len(macs)
    if len(accs) != n:
        raise ValueError(f"{n} MACs values but {len(accs)} accuracies")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n < k:
        raise ConfigError(f"the search produced {n} candidates, fewer than the {k} sub-nets asked for; "
                          "lower --min-macs or the MACs step, or ask for fewer sub-nets")  # fmt: skip
    by_macs = sorted(range(n), key=lambda i: (-macs[i], i))
    if targets is not None:
        full = full_macs if full_macs is not None else max(macs)
        chosen: list[int] = []
        ordered = sorted(targets, reverse=True)
        if keep_largest:
            chosen.append(by_macs[0])
            ordered = ordered[1:]
        for t in ordered:
            budget = t * full * (1 + 1e-9)
            fits = [i for i in by_macs if macs[i] <= budget and i not in chosen]
            if fits:
                chosen.append(max(fits, key=lambda i: (accs[i], macs[i], -i)))
            else:
                rest = [i for i in by_macs if i not in chosen]
                chosen.append(rest[-1])
        return sorted(chosen, key=lambda i: (-macs[i], i))
    if not pareto:
        picks = sorted({round(j * (n - 1) / max(1, k - 1)) for j in range(k)})
        return [by_macs[p] for p in picks]
    front = sorted(pareto_front(macs, accs), key=lambda i: (-macs[i], i))  # largest first
    if keep_largest and by_macs[0] not in front:
        front.insert(0, by_macs[0])
    pool = front if len(front) >= k else by_macs
    hi, lo = macs[front[0]], macs[front[-1]]
    levels = [hi - j * (hi - lo) / max(1, k - 1) for j in range(k)] if k > 1 else [hi]
    chosen = []
    if len(front) < k:
        chosen = list(front)
        levels = [lv for lv in levels if all(abs(macs[c] - lv) > 1e-9 for c in chosen)]
    for lv in levels:
        if len(chosen) == k:
            break
        rest = [i for i in pool if i not in chosen]
        chosen.append(min(rest, key=lambda i: (abs(macs[i] - lv), -accs[i], i)))
    while len(chosen) < k:  # levels used up by duplicates: fill with the unused candidates nearest the gaps
        rest = [i for i in by_macs if i not in chosen]
        chosen.append(max(rest, key=lambda i: (min(abs(macs[i] - macs[c]) for c in chosen), -i)))
    return sorted(chosen, key=lambda i: (-macs[i], i))


def subnet_names(macs: Sequence[int], full_macs: int) -> list[str]:
    """Names of the final sub-nets from their MACs share: ``m100``, ``m55``, ``m10`` (``m55b`` when one repeats)."""
    names: list[str] = []
    for m in macs:
        base = f"m{round(100 * m / full_macs)}"
        name, n = base, 0
        while name in names:
            n += 1
            name = f"{base}{chr(ord('a') + n)}"
        names.append(name)
    return names
