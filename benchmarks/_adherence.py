"""Adherence under ramps of busy processes (issue 15): adaptive vs static vs always-smallest vs oracle.

A *pattern* is a list of busy-process counts, one per phase (e.g. ``0 -> 1 -> 2 -> 0 -> 2`` on 2 cores). Every
strategy serves the same pattern with one caller at a fixed period and a fixed budget:

* adaptive: ``SlimRuntime(threads=(T, 1))``, choosing (sub-net, threads) pairs online;
* static: ``SlimRuntime(threads=T, adapt=False)``: the pair chosen from the quiet profile, never changed;
* smallest: the smallest sub-net at ``T`` threads, always;
* oracle: per phase, the most accurate pair whose latency quantile measured *under that phase's load* fits the
  budget (it knows the future load; its pick per phase is reported).

``quantile`` (default 0.95, the runtime's default) is the latency quantile that adaptive, static and the oracle fit
into the budget: 0.99 asks every strategy for what issue 15's goal (99% of calls within budget) asks.

Imported by ``benchmarks/runtime.py`` (section ``adherence``).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import random_input

PATTERNS: dict[str, list[int]] = {
    "ramp_0_1_2_0_2": [0, 1, 2, 0, 2, 0],  # the pattern, then quiet again
    "one_busy_of_two": [0, 1, 0, 1, 0],  # 1 busy process on 2 cores: the 2-thread sessions wait for their 2nd core
    "burst_2": [0, 2, 0],
}


def _busy(stop: Any) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


class BackgroundLoad:
    """A settable number of busy-looping processes."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("spawn")
        self.workers: list[tuple[Any, Any]] = []

    def set(self, procs: int) -> None:
        while len(self.workers) > procs:
            stop, w = self.workers.pop()
            stop.set()
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
        while len(self.workers) < procs:
            stop = self.ctx.Event()
            w = self.ctx.Process(target=_busy, args=(stop,), daemon=True)
            w.start()
            self.workers.append((stop, w))
        time.sleep(0.05)

    def off(self) -> None:
        self.set(0)


def _storm_worker(ready: Any, go: Any, stop: Any) -> None:
    ready.release()
    go.wait()
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


class Storm:
    """``procs`` busy-looping processes, spawned and imported *before* the storm (a spawn costs CPU for a while,
    which would blur when the storm starts), released together by :meth:`start`, stopped by :meth:`stop`."""

    def __init__(self, procs: int) -> None:
        ctx = mp.get_context("spawn")
        self.go, self.halt, ready = ctx.Event(), ctx.Event(), ctx.Semaphore(0)
        self.workers = [ctx.Process(target=_storm_worker, args=(ready, self.go, self.halt), daemon=True)
                        for _ in range(procs)]  # fmt: skip
        for w in self.workers:
            w.start()
        for _ in self.workers:
            if not ready.acquire(timeout=120):
                self.stop()
                raise RuntimeError("storm workers did not start within 120 s")
        time.sleep(0.2)

    def start(self) -> None:
        self.go.set()

    def stop(self) -> None:
        self.halt.set()
        self.go.set()
        for w in self.workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()


def _adapt_config(clear_slowdown: float | None) -> Any:
    """The runtime's adaptation knobs, with ``clear_slowdown`` replaced when given (A/B of the backoff rule)."""
    from slimrt.runtime import AdaptConfig

    return AdaptConfig() if clear_slowdown is None else AdaptConfig(clear_slowdown=clear_slowdown)


def _label(name: str, threads: int | None) -> str:
    return f"{name}@{'auto' if threads is None else threads}"


def bench_adherence_ramps(root: Path, threads: int | None, quick: bool, budget_ms: float | None,
                          patterns: dict[str, list[int]] | None = None, quantile: float = 0.95,
                          clear_slowdown: float | None = None, clear_sessions: bool = True) -> dict[str, Any]:
    """Every pattern x strategy: share of calls within budget, mean accuracy served, oracle's pick per phase.
    ``clear_slowdown``: the adaptive runtime's ``AdaptConfig.clear_slowdown`` (None: the default);
    ``clear_sessions``: its ``SlimRuntime(clear_sessions=...)``."""
    from slimrt import SlimRuntime
    from slimrt.artifact import verify_artifact
    from slimrt.backends import open_runners
    from slimrt.runtime import Candidate, measure_latency, select

    patterns = patterns or PATTERNS
    phase_s = 1.0 if quick else 2.0
    manifest = verify_artifact(root)
    subs = manifest.subnets
    b0 = manifest.input.shape[0]
    x = random_input(manifest, b0 if isinstance(b0, int) and not manifest.dynamic_batch else 1)
    counts: list[int | None] = [threads, 1] if threads != 1 else [1, 2]
    acc = {s.name: next((float(a) for a in (s.test_accuracy, s.val_accuracy) if a is not None), float(s.macs))
           for s in subs}
    levels = sorted({p for pat in patterns.values() for p in pat})
    load = BackgroundLoad()
    # latency of every pair under every load level, from the runners SlimRuntime serves with
    lat: dict[int, dict[str, Any]] = {}
    opened = [open_runners(root, manifest, "cpu", threads=t) for t in counts]
    try:
        runners = {_label(s.name, t): o.runners[s.name] for t, o in zip(counts, opened, strict=True) for s in subs}
        for level in levels:
            load.set(level)
            lat[level] = measure_latency(runners, x, warmup=5, runs=200, duration_s=1.0 if quick else 2.0)
    finally:
        load.off()
        for o in opened:
            o.close()
    full = _label(subs[0].name, counts[0])
    if budget_ms is None:
        budget_ms = 1.5 * lat[0][full].p95_ms  # the budget: 1.5x the most accurate sub-net's quiet p95

    def cands(level: int) -> list[Candidate]:
        return [Candidate(s.name, acc[s.name], lat[level][_label(s.name, t)], threads=t) for t in counts for s in subs]

    oracle = {level: select(cands(level), budget_ms, quantile) for level in levels}
    smallest = min(subs, key=lambda s: s.macs).name
    period_s = max(2 * budget_ms / 1e3, budget_ms / 1e3 + 0.001)
    out: dict[str, Any] = {}
    for pname, pattern in patterns.items():
        res: dict[str, Any] = {}
        for strategy in ("adaptive", "static", "smallest", "oracle"):
            res[strategy] = _serve(root, strategy, pattern, counts, budget_ms, phase_s, period_s, x, acc, smallest,
                                   {lv: (o.name, o.threads) for lv, o in oracle.items()}, load, SlimRuntime, quantile,
                                   {k: v.p50_ms for k, v in lat[0].items()}, _adapt_config(clear_slowdown),
                                   clear_sessions)
        a, o = res["adaptive"], res["oracle"]
        out[pname] = {
            "busy_procs": pattern, "strategies": res,
            "oracle_best_per_phase": [_label(*(oracle[lv].name, oracle[lv].threads)) for lv in pattern],
            "goal_within_budget_met": a["within_budget"] >= 0.99,
            "goal_accuracy_vs_oracle": a["mean_accuracy"] / o["mean_accuracy"],
            "goal_accuracy_met": a["mean_accuracy"] >= 0.99 * o["mean_accuracy"],
        }
    return {
        "budget_ms": budget_ms, "quantile": quantile, "thread_counts": counts, "phase_s": phase_s,
        "clear_sessions": clear_sessions,
        "period_ms": period_s * 1e3,
        "cpu_count": os.cpu_count(),
        "p95_ms_by_busy_procs": {str(lv): {k: v.p95_ms for k, v in lat[lv].items()} for lv in levels},
        "oracle_by_busy_procs": {str(lv): _label(o.name, o.threads) for lv, o in oracle.items()},
        "patterns": out,
    }


def _serve(root: Path, strategy: str, pattern: list[int], counts: list[int | None], budget_ms: float, phase_s: float,
           period_s: float, x: np.ndarray, acc: dict[str, float], smallest: str,
           oracle: dict[int, tuple[str, int | None]], load: BackgroundLoad, runtime_cls: Any,
           quantile: float = 0.95, quiet_p50: dict[str, float] | None = None, adapt_config: Any = None,
           clear_sessions: bool = True) -> dict[str, Any]:
    served: list[str] = []
    lat_ms: list[float] = []
    phases: list[dict[str, Any]] = []
    threads: Any = tuple(counts) if strategy == "adaptive" else counts[0]
    if strategy == "oracle":
        threads = tuple(counts)
    with runtime_cls(root, budget_ms=budget_ms, threads=threads, adapt=strategy == "adaptive", quantile=quantile,
                     measure_runs=60, measure_seconds=3.0, adapt_config=adapt_config,
                     clear_sessions=clear_sessions) as rt, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for level in pattern:
                load.set(level)
                end = time.perf_counter() + phase_s
                n0 = len(served)
                while time.perf_counter() < end:
                    t0 = time.perf_counter()
                    if strategy in ("adaptive", "static"):
                        name, t = rt.active_name, rt.active_threads  # single caller: the pair this call runs on
                        rt(x)
                    else:
                        name, t = (smallest, counts[0]) if strategy == "smallest" else oracle[level]
                        rt.runner(name, t).infer(x)
                    dt = time.perf_counter() - t0
                    served.append(_label(name, t))
                    lat_ms.append(dt * 1e3)
                    rest = period_s - (time.perf_counter() - t0)
                    if rest > 0:
                        time.sleep(rest)
                seg = lat_ms[n0:]
                phases.append({"busy_procs": level, "calls": len(seg),
                               "within_budget": float(np.mean(np.asarray(seg) <= budget_ms)) if seg else None,
                               "served": {n: served[n0:].count(n) for n in dict.fromkeys(served[n0:])},
                               **_misses(seg, served[n0:], budget_ms, quiet_p50)})
                if strategy == "adaptive":  # the miss guard's margin at the end of the phase (selection fits budget/it)
                    st = rt.stats()
                    phases[-1]["budget_margin_end"] = st.budget_margin
                    phases[-1]["clear_calls_so_far"] = st.clear_calls
        finally:
            load.off()
        switches = rt.stats().switches if strategy == "adaptive" else None
    arr = np.asarray(lat_ms)
    return {
        "calls": len(served), "within_budget": float(np.mean(arr <= budget_ms)),
        "mean_accuracy": float(np.mean([acc[s.split("@")[0]] for s in served])),
        "served": {n: served.count(n) for n in dict.fromkeys(served)},
        "p50_ms": float(np.median(arr)), "p99_ms": float(np.quantile(arr, 0.99)), "switches": switches,
        "phases": phases,
    }


def _misses(lat_ms: list[float], served: list[str], budget_ms: float,
            quiet_p50: dict[str, float] | None) -> dict[str, Any]:
    """A phase's calls over budget: how many, how many among its first 20 calls (the load just changed), their
    latencies, and how many no pair could have absorbed: the delay the call suffered on top of its pair's quiet p50,
    added to the fastest pair's quiet p50, is still over budget (a preemption longer than the budget's slack). A
    faster pair still meets such delays less often (a shorter call is preempted less often), so these are misses a
    smaller sub-net makes rarer, not ones it would have met."""
    over = [(i, dt, name) for i, (dt, name) in enumerate(zip(lat_ms, served, strict=True)) if dt > budget_ms]
    out: dict[str, Any] = {"misses": len(over), "misses_first_20_calls": sum(i < 20 for i, _, _ in over),
                           "miss_ms": sorted(round(dt, 2) for _, dt, _ in over)[:50]}
    if quiet_p50:
        fastest = min(quiet_p50.values())
        out["misses_no_pair_absorbs"] = sum(dt - quiet_p50.get(name, 0.0) + fastest > budget_ms for _, dt, name in over)
    return out


def _plus1(i: int | None) -> int | None:
    return None if i is None else i + 1


def tracking_errors(estimates: list[float], observed: list[tuple[float, Any]], window: int | None = None
                    ) -> list[float]:
    """Per call n: how far the served thread count's slowdown estimate after call n is from what the device did
    next: the estimate a fresh :class:`SlowdownEstimator` (the runtime's own, same views) reads from calls n+1 ..
    n+window (``observed``: (ms, the pair's profiled SubnetLatency) per call), as a relative error. The last
    ``window`` calls have no full future window and are left out. Unlike "back to the quiet profile", this does not
    count a machine that really stays slower (a VM's drift) as a stuck estimate."""
    from slimrt.runtime.adapt import AdaptConfig, SlowdownEstimator

    cfg = AdaptConfig() if window is None else AdaptConfig(window=window)
    window = cfg.window
    out = []
    for n in range(len(estimates) - window):
        est = SlowdownEstimator(cfg)
        for ms, lat in observed[n + 1:n + 1 + window]:
            est.update(ms, lat.p50_ms, lat.p95_ms / lat.p50_ms, lat.p90_ms)
        out.append(abs(estimates[n] - est.value) / est.value)
    return out


def settle_index(values: list[float], ok: Any) -> int | None:
    """First index from which every value satisfies ``ok`` to the end (None when the last one does not)."""
    k = len(values)
    while k > 0 and ok(values[k - 1]):
        k -= 1
    return k if k < len(values) else None


CLEAR_AT = 1.1  # a slowdown estimate at or below this is "back to the profile" (issue 15: within 10%)


def _count_name(threads: int | None) -> str:
    """A thread count as the results name it: ``auto`` for ONNX Runtime's default."""
    return "auto" if threads is None else str(threads)


def _runs(seq: Sequence[str], cap: int = 40) -> list[list[Any]]:
    """Run-length form of ``seq`` ([[value, count], ...], at most ``cap`` runs; the rest is dropped)."""
    out: list[list[Any]] = []
    for v in seq:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        elif len(out) < cap:
            out.append([v, 1])
        else:
            break
    return out


def _excursions(highest: Sequence[float], above: Sequence[str], served: Sequence[str],
                observed: Sequence[tuple[float, Any]], cap: int = 20) -> list[dict[str, Any]]:
    """The post-storm calls, after the first one at which every estimate was <= 1.1, at which one exceeds 1.1
    again: call number, the largest estimate, the thread counts above 1.1, the pair served and its call's time over
    its profiled p50 (what a recovery that does not last is made of). At most ``cap``, the first ones."""
    first = next((i for i, v in enumerate(highest) if v <= CLEAR_AT), None)
    if first is None:
        return []
    out = []
    for i in range(first, len(highest)):
        if highest[i] > CLEAR_AT:
            ms, lat = observed[i]
            out.append({"call": i + 1, "highest": highest[i], "counts_above": above[i], "served": served[i],
                        "observed_over_p50": ms / lat.p50_ms})  # fmt: skip
            if len(out) >= cap:
                break
    return out


def bench_recovery(root: Path, threads: int | None, quick: bool, budget_ms: float | None, storm_procs: int = 8,
                   storm_s: float = 1.0, after_calls: int = 600, clear_slowdown: float | None = None,
                   clear_sessions: bool = True) -> dict[str, Any]:
    """Issue 15's storm recovery: quiet calls, a storm of ``storm_procs`` busy processes for ``storm_s`` while the
    runtime keeps serving, then quiet again; after every post-storm call the slowdown estimate of *every* thread
    count (what scales each prediction) is read. Per trial: the peak estimate during the storm (the storm did
    register), the first post-storm call from which no estimate exceeds 1.1 to the end (``calls_to_clear``: the
    storm's excess is gone; the goal is <= 200 calls) and the first call at which none does. An estimate *below*
    0.9 is no storm residue but the machine running faster than its profile; ``calls_to_settle_both_ways`` also
    counts those.
    Calls run back to back (the profile's own protocol): paced calls with idle gaps run measurably slower than the
    profile even on a quiet machine, which would read as a slowdown that never ends."""
    from slimrt import SlimRuntime
    from slimrt.artifact import verify_artifact

    manifest = verify_artifact(root)
    b0 = manifest.input.shape[0]
    x = random_input(manifest, b0 if isinstance(b0, int) and not manifest.dynamic_batch else 1)
    counts: tuple[int | None, ...] = (threads, 1) if threads != 1 else (1, 2)
    cfg = _adapt_config(clear_slowdown)
    trials = []
    storm: Storm | None = None
    with SlimRuntime(root, budget_ms=1e6, threads=counts, measure_runs=60, measure_seconds=3.0,
                     adapt_config=cfg, clear_sessions=clear_sessions) as rt, \
            warnings.catch_warnings():  # fmt: skip
        warnings.simplefilter("ignore")
        if budget_ms is None:
            budget_ms = 1.5 * rt.subnets[0].latency.p95_ms
        rt.budget_ms = budget_ms
        # the quiet choice: the accuracy a runtime on the quiet profile serves (the runtime's quantile, 0.95)
        accuracy = {v.name: v.accuracy for v in rt.variants}
        fits = [v.accuracy for v in rt.variants if v.accuracy is not None and v.latency.p95_ms <= budget_ms]
        quiet_accuracy = max(fits, default=None)
        # calls back to back, as the profile was measured: a paced call runs colder (~15-20% slower here)
        try:
            # storm trials alternate with control trials without a storm: what the quiet machine alone does
            for procs in [storm_procs, 0] * (2 if quick else 5):
                storm = Storm(procs)
                for _ in range(300):
                    rt(x)
                before = dict(rt.slowdowns)
                patience_before = rt.stats().up_patience
                storm.start()
                peak: dict[str, float] = {}
                end = time.perf_counter() + storm_s
                storm_calls = 0
                while time.perf_counter() < end:
                    rt(x)
                    storm_calls += 1
                    for t, v in rt.slowdowns.items():
                        peak[_count_name(t)] = max(peak.get(_count_name(t), 0.0), v)
                storm.stop()
                patience_after = rt.stats().up_patience
                highest: list[float] = []  # per post-storm call: the largest estimate over the thread counts
                farthest: list[float] = []  # ... and the one farthest from 1.0 either way
                served_est: list[float] = []  # ... the served count's estimate after the call
                served: list[str] = []  # ... the (sub-net, threads) pair that ran it
                above: list[str] = []  # ... the thread counts whose estimate exceeds 1.1 after it
                observed: list[tuple[float, Any]] = []  # ... and the call's time with its pair's profiled latency
                margins: list[float] = []  # ... the miss guard's budget margin after it
                as_quiet: list[bool] = []  # ... whether it served a sub-net as accurate as the quiet choice
                prof = rt.latency_profile
                steady = rt.stats().steady_calls
                for _ in range(after_calls):
                    name, t = rt.active_name, rt.active_threads
                    t0 = time.perf_counter()
                    rt(x)
                    ms = (time.perf_counter() - t0) * 1e3
                    lat = prof.latency(name, t)
                    st = rt.stats()
                    now = st.steady_calls
                    margins.append(st.budget_margin)
                    if now > steady:  # a steady (spinning) session's call: the runtime floors it at the profile's
                        ms, steady = max(ms, lat.p50_ms), now  # p50 before the estimate sees it (runtime.py)
                    observed.append((ms, lat))
                    served_est.append(rt.slowdowns[t])
                    served.append(f"{name}@{_count_name(t)}")
                    a = accuracy[name]
                    as_quiet.append(quiet_accuracy is not None and a is not None and a >= quiet_accuracy)
                    above.append(",".join(_count_name(c) for c, v in rt.slowdowns.items() if v > CLEAR_AT))
                    values = list(rt.slowdowns.values())
                    highest.append(max(values))
                    farthest.append(max(values, key=lambda v: abs(v - 1.0)))
                track = tracking_errors(served_est, observed)
                clear = settle_index(highest, lambda v: v <= CLEAR_AT)
                within = settle_index(farthest, lambda v: abs(v - 1.0) <= 0.1)
                trials.append({
                    "busy_procs": procs,
                    "slowdown_before": {_count_name(t): v for t, v in before.items()},
                    "storm_calls": storm_calls, "storm_peak_slowdown": peak,
                    "up_patience_before_storm": patience_before, "up_patience_after_storm": patience_after,
                    "calls_to_first_clear": next((i + 1 for i, v in enumerate(highest) if v <= CLEAR_AT), None),
                    "calls_to_clear": _plus1(clear),
                    "calls_to_settle_both_ways": _plus1(within),
                    "highest_slowdown_after_calls": {str(n): highest[n - 1] for n in (1, 50, 100, 200, 400, after_calls)
                                                     if n <= len(highest)},
                    "lowest_slowdown_after_200_calls": min(farthest[199:], default=None),
                    "calls_to_track": _plus1(settle_index(track, lambda e: e <= 0.1)),
                    "tracking_error_after_calls": {str(n): track[n - 1] for n in (1, 32, 100, 200)
                                                   if n <= len(track)},
                    "calls_to_quiet_choice": next((i + 1 for i, v in enumerate(as_quiet) if v), None),
                    "quiet_choice_share": float(np.mean(as_quiet)),
                    "quiet_choice_share_last_300": float(np.mean(as_quiet[-300:])),
                    "budget_margin_after_calls": {str(n): margins[n - 1] for n in (1, 100, 200, 400, after_calls)
                                                  if n <= len(margins)},
                    "served_runs": _runs(served),
                    "excursions": _excursions(highest, above, served, observed),
                    "observed_over_profile_median_last_100": float(np.median([ms / lat.p50_ms
                                                                             for ms, lat in observed[-100:]])),
                })  # fmt: skip
        finally:
            if storm is not None:
                storm.stop()
    settled = [t["calls_to_clear"] for t in trials if t["busy_procs"]]
    control = [t["calls_to_clear"] for t in trials if not t["busy_procs"]]
    first = [t["calls_to_first_clear"] for t in trials if t["busy_procs"]]
    track_calls = [t["calls_to_track"] for t in trials if t["busy_procs"]]
    to_quiet = [t["calls_to_quiet_choice"] for t in trials if t["busy_procs"]]
    return {
        "budget_ms": budget_ms, "thread_counts": ["auto" if t is None else t for t in counts],
        "storm_procs": storm_procs, "storm_s": storm_s, "period_ms": 0.0, "after_calls": after_calls,
        "clear_slowdown": cfg.clear_slowdown if math.isfinite(cfg.clear_slowdown) else "inf",
        "clear_sessions": clear_sessions,
        "trials": trials, "calls_to_clear": settled, "control_calls_to_clear": control,
        "calls_to_first_clear": first, "calls_to_track": track_calls, "quiet_accuracy": quiet_accuracy,
        "calls_to_quiet_choice": to_quiet,
        "quiet_choice_share": [t["quiet_choice_share"] for t in trials if t["busy_procs"]],
        "control_quiet_choice_share": [t["quiet_choice_share"] for t in trials if not t["busy_procs"]],
        "goal_clear_within_200_calls": all(s is not None and s <= 200 for s in settled),
        "tracks_within_200_calls": all(s is not None and s <= 200 for s in track_calls),
    }
