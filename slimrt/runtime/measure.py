"""Latency measurement shared by the runtime (no stored profile) and ``slimrt bench``.

Runs are interleaved round-robin over the sub-nets, so slow drifts of the machine (thermal, background load)
spread over every sub-net instead of biasing whichever was measured last.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import numpy as np

from slimrt.backends.base import Runner
from slimrt.schema import SubnetLatency

__all__ = ["measure_latency", "summarize"]

log = logging.getLogger(__name__)


def summarize(name: str, samples_ms: np.ndarray | list[float]) -> SubnetLatency:
    """p50/p90/p95/p99/mean/cv of latency samples in milliseconds."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError(f"no latency samples for {name!r}")
    p50, p90, p95, p99 = (float(v) for v in np.quantile(a, [0.5, 0.9, 0.95, 0.99]))
    mean = float(a.mean())
    # np.quantile is monotone, but guard against float noise so SubnetLatency's check holds.
    p90, p95 = max(p90, p50), max(p95, p90, p50)
    p99 = max(p99, p95)
    cv = float(a.std() / mean) if mean > 0 else 0.0
    floor = 1e-6
    return SubnetLatency(
        name=name, p50_ms=max(p50, floor), p90_ms=max(p90, floor), p95_ms=max(p95, floor), p99_ms=max(p99, floor),
        mean_ms=max(mean, floor), cv=cv, runs=int(a.size),
    )


def measure_latency(
    runners: Mapping[str, Runner] | Mapping[str, Callable[[np.ndarray], np.ndarray]],
    x: np.ndarray,
    warmup: int = 10,
    runs: int = 100,
    duration_s: float | None = None,
    min_runs: int = 10,
    block: int = 1,
) -> dict[str, SubnetLatency]:
    """Latency of every runner on input ``x``: ``warmup`` untimed rounds, then up to ``runs`` timed rounds.

    Args:
        runners: name -> Runner (or any callable ``x -> y``).
        x: the input fed to every runner.
        warmup: untimed round-robin rounds first.
        runs: timed rounds (each round calls every runner once, in rotating order).
        duration_s: stop timing after this many seconds once every runner has ``min_runs`` samples.
        min_runs: floor on timed rounds when ``duration_s`` cuts the measurement short.
        block: calls per runner per round. With 1 every call is timed, right after another runner's (with many
            runners, on caches the others have filled). With ``block`` > 1 each runner is called ``block`` times in a
            row and the first call of each block, which pays the switch, is not timed: the steady latency of a
            runner served call after call, as a runtime serves, still interleaved against the machine's drift.
    """
    if not runners:
        raise ValueError("nothing to measure")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    names = list(runners)
    fns = [r.infer if isinstance(r, Runner) else r for r in runners.values()]
    for _ in range(max(warmup, 0)):
        for f in fns:
            f(x)
    timed = max(block - 1, 1)
    samples = np.zeros((len(fns), runs * timed), dtype=np.int64)
    clock = time.perf_counter_ns
    deadline = None if duration_s is None else clock() + int(duration_s * 1e9)
    k = len(fns)
    done = 0
    for r in range(runs):
        for j in range(k):
            i = (r + j) % k  # rotate the order so no sub-net always follows the same one
            if block > 1:
                fns[i](x)  # the switch to this runner: not timed
            for b in range(timed):
                t0 = clock()
                fns[i](x)
                samples[i, r * timed + b] = clock() - t0
        done = r + 1
        if deadline is not None and done >= min_runs and clock() > deadline:
            break
    if done < runs:
        log.info("latency measurement stopped after %d of %d rounds (duration limit %.1fs)", done, runs, duration_s)
    return {n: summarize(n, samples[i, : done * timed] / 1e6) for i, n in enumerate(names)}
