"""``SlimRuntime``: serve each call with the most accurate sub-net that meets the latency budget.

Load: verify the artifact, open one runner per sub-net (per thread count when several are asked for on CPU), take
latency from a stored profile whose device fingerprint matches (else measure and optionally save). Call: validate
the input against the manifest, read the controller's decision (one attribute read of (candidate, feasible,
budget), so a call never mixes sub-nets or budgets), run it outside any lock, then under a short lock count it and
feed its latency to the adaptation controller, which picks the (sub-net, threads) pair for the next call.

Steady sessions (``steady_after``): once one candidate has served ``steady_after`` calls in a row, a second session
of it with the backend's fastest steady-state settings (ONNX Runtime: spinning intra-op workers) is built in a
background thread, and serves from then on while the run lasts; the first call after a switch goes back to the
regular (non-spinning) session, so sessions that alternate call by call never fight each other's spinning workers.

Clear sessions (``clear_sessions``): while every slowdown estimate is clear (``AdaptConfig.clear_slowdown``: the
device runs as profiled), a call that is not on a steady session runs on a third session of its sub-net whose
workers spin during the run and stop at its end (ONNX Runtime ``session.force_spinning_stop``): close to a
spinning session's speed, and nothing left spinning to slow the next sub-net, so switching costs little. Spinning
is what a shared CPU punishes (a spinning thread burns the slice a busy process needs, and waits for a preempted
worker), so once any estimate shows contention the regular non-spinning session serves again. Built in the
background on first need, like steady sessions; their calls count no faster than the profile.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from slimrt.artifact import add_latency_profile, load_latency_profiles, verify_artifact
from slimrt.backends.artifact import matching_engines, open_runners, resolve_backend
from slimrt.backends.base import Runner
from slimrt.errors import ArtifactError, ConfigError, InputError, ProfileError, SlimrtError
from slimrt.fingerprint import device_fingerprint
from slimrt.runtime.adapt import AdaptConfig, Controller
from slimrt.runtime.measure import measure_latency
from slimrt.runtime.selector import Candidate, Selector, check_budget
from slimrt.schema import DeviceFingerprint, LatencyProfile, SubnetEntry, SubnetLatency, ThreadLatency

# resolve_backend and matching_engines live in slimrt.backends; re-exported here for existing imports
__all__ = ["SlimRuntime", "SubnetInfo", "RuntimeStats", "BudgetInfeasibleWarning", "resolve_backend",
           "matching_engines", "DEFAULT_STEADY_AFTER"]

log = logging.getLogger(__name__)

#: Calls in a row on one sub-net after which its steady (spinning) session serves (see ``benchmarks/runtime.py``,
#: section vs_default); None turns steady sessions off.
DEFAULT_STEADY_AFTER: int | None = 64
_NEVER = sys.maxsize


class BudgetInfeasibleWarning(RuntimeWarning):
    """No sub-net is predicted to meet the budget; the fastest one is served."""


class SubnetInfo(BaseModel):
    """A sub-net as the runtime sees it on this device."""

    model_config = ConfigDict(frozen=True)

    name: str
    macs: int
    params: int
    accuracy: float | None
    latency: SubnetLatency
    predicted_ms: float
    threads: int | None = None


class RuntimeStats(BaseModel):
    """Counters since load (or :meth:`SlimRuntime.reset_stats`)."""

    calls: dict[str, int]
    misses: dict[str, int]
    total_calls: int
    total_misses: int
    switches: int
    slowdown: float
    budget_infeasible: int
    budget_ms: float
    active: str
    latency_source: Literal["stored", "measured"]
    backend: str
    device: str
    active_threads: int | None = None
    calls_by_threads: dict[str, int] = {}
    slowdown_by_threads: dict[str, float] = {}
    steady_calls: int = 0
    #: calls served by a clear session (spinning during the run only) while the device was clear
    clear_calls: int = 0
    budget_margin: float = 1.0
    #: calls in a row a more accurate pair must fit before the runtime steps up to it (grows after failed step-ups)
    up_patience: int = 0


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _thread_label(t: int | None) -> str:
    return "auto" if t is None else str(t)


def _thread_counts(threads: object, device: str) -> list[int | None]:
    """``threads`` (None, an int, or a sequence of them, the first one primary) as a list of distinct counts."""
    seq = list(threads) if isinstance(threads, Sequence) and not isinstance(threads, str) else [threads]
    if not seq:
        raise ConfigError("threads must not be an empty sequence; pass None for the backend's default")
    for k, t in enumerate(seq):
        if (t is not None or k > 0) and (not _is_int(t) or t < 1):  # type: ignore[operator]
            raise ConfigError(f"threads must be a whole number >= 1 or None (None only first in a sequence), "
                              f"got {threads!r}")
    if len(set(seq)) != len(seq):
        raise ConfigError(f"threads lists a thread count twice: {threads!r}")
    if len(seq) > 1 and device != "cpu":
        raise ConfigError(f"several thread counts ({threads!r}) are a CPU knob; on {device} pass one or None")
    return seq  # type: ignore[return-value]


def _check_args(artifact: object, quantile: object, runs: object, seconds: object, steady_after: object) -> None:
    """ConfigError (a SlimrtError) naming the first constructor argument of the wrong type or range."""
    if not isinstance(artifact, str | os.PathLike) or not str(artifact):
        raise ConfigError(f"artifact must be the path of an artifact directory (str or Path), got {artifact!r}")
    if not _is_real(quantile) or not 0 < float(quantile) < 1:  # type: ignore[arg-type]
        raise ConfigError(f"quantile must be a number strictly between 0 and 1 (e.g. 0.95), got {quantile!r}")
    if not _is_int(runs) or runs < 1:  # type: ignore[operator]
        raise ConfigError(f"measure_runs must be a whole number >= 1 (timed rounds at load), got {runs!r}")
    if not _is_real(seconds) or not 0 < float(seconds) < math.inf:  # type: ignore[arg-type]
        raise ConfigError(f"measure_seconds must be a positive finite number of seconds, got {seconds!r}")
    if steady_after is not None and (not _is_int(steady_after) or steady_after < 1):  # type: ignore[operator]
        raise ConfigError(f"steady_after must be a whole number >= 1 (calls in a row) or None (off), got "
                          f"{steady_after!r}")


class SlimRuntime:
    """Run the most accurate sub-net of an artifact whose predicted latency fits ``budget_ms``.

    Args:
        artifact: artifact directory (from ``slimrt export``).
        budget_ms: latency budget per call, in milliseconds.
        device: "cpu", "cuda" or "jetson".
        quantile: latency quantile that must fit the budget (0.95: 95% of calls predicted within budget).
        backend: "auto", "onnxruntime", "tensorrt" or "torch".
        threads: intra-op CPU threads per session (None: the backend's default), or a sequence of thread counts
            (CPU only, e.g. ``(None, 1)``): every sub-net is then opened once per count and the runtime chooses the
            most accurate (sub-net, threads) pair that fits, with one slowdown estimate per count. The first count
            is the profile's fingerprint; the others are its ``thread_variants``. Each extra count costs one more
            session per sub-net (see ``benchmarks/runtime.py``, section memory).
        adapt: scale predictions online by the measured slowdown of the device.
        measure_if_missing: measure latency at load when no stored profile matches this device.
        save_profile: store a profile measured at load into the artifact (``latency/<fingerprint>.json``).
        check_finite: reject inputs holding NaN or infinity (costs a pass over the input).
        batch_size: batch size the latency profile is for (default: the exported batch, or 1 if dynamic).
        adapt_config: knobs of the online adaptation.
        measure_runs: timed rounds when measuring at load (bounded by ``measure_seconds``).
        measure_seconds: time limit of the measurement at load.
        backend_options: backend switches, e.g. ``{"threading": "nospin"}`` for ONNX Runtime.
        steady_after: after this many calls in a row on one (sub-net, threads) pair, serve it from a second session
            with the backend's fastest steady settings (ONNX Runtime on CPU: spinning workers), built in the
            background on first need; a switch goes back to the regular session. None: never. Costs one more
            session per sub-net that reaches a steady run (:meth:`prepare_steady` builds them up front).
        clear_sessions: while the device runs as profiled (every slowdown estimate at most
            ``adapt_config.clear_slowdown``), serve calls outside a steady run from a session whose workers spin
            during the run and stop at its end (ONNX Runtime on CPU with more than one thread), built in the
            background on first need; under contention the regular session serves. Only while adapting. Costs one
            more session per sub-net served on a clear device (:meth:`prepare_clear` builds them up front).
    """

    def __init__(
        self,
        artifact: str | Path,
        budget_ms: float = 5.0,
        device: str = "cpu",
        quantile: float = 0.95,
        backend: str = "auto",
        threads: int | None | Sequence[int | None] = None,
        adapt: bool = True,
        measure_if_missing: bool = True,
        save_profile: bool = False,
        check_finite: bool = False,
        *,
        batch_size: int | None = None,
        adapt_config: AdaptConfig | None = None,
        measure_runs: int = 100,
        measure_seconds: float = 3.0,
        backend_options: dict[str, Any] | None = None,
        steady_after: int | None = DEFAULT_STEADY_AFTER,
        clear_sessions: bool = True,
    ) -> None:
        self._budget = check_budget(budget_ms)
        _check_args(artifact, quantile, measure_runs, measure_seconds, steady_after)
        self.thread_counts = _thread_counts(threads, device)
        self.root = Path(artifact)
        self.manifest = verify_artifact(self.root)
        self.device = device
        self.quantile = quantile
        self.threads = self.thread_counts[0]
        self.check_finite = check_finite
        self.backend = resolve_backend(self.manifest, device, backend)
        self._runners: list[Runner] = []
        self._builders: list[threading.Thread] = []
        self._closed = False
        self._lock = threading.Lock()
        self._warned = False
        self._setup_input(batch_size)
        try:
            self._open_runners(backend_options or {})
            self._warm_up()
            self.fingerprint = self._fingerprint()
            self.latency_profile, self.latency_source = self._latency(measure_if_missing, save_profile, measure_runs,
                                                              measure_seconds)
        except BaseException:
            self.close()
            raise
        self._entries = list(self.manifest.subnets)
        self._infers = [r.infer for r in self._runners]
        n = len(self._entries)
        # candidate k is sub-net k % n at thread count k // n (the primary count's candidates first)
        self._pair = [(k % n, self.thread_counts[k // n]) for k in range(len(self._runners))]
        # Test accuracy ranks the sub-nets when known: it is measured on the larger held-out set (validation
        # accuracy drove the search's decisions and is noisier); validation accuracy otherwise.
        accs = [s.test_accuracy if s.test_accuracy is not None else s.val_accuracy for s in self._entries]
        if any(a is None for a in accs):
            log.warning("some sub-nets lack an accuracy in the manifest; ranking all sub-nets by MACs instead")
            score = [float(s.macs) for s in self._entries]
        else:
            score = [float(a) for a in accs]  # type: ignore[arg-type]
        self._accuracy = [a if a is None else float(a) for a in accs]
        prof = self.latency_profile
        cands = [Candidate(self._entries[i].name, score[i], prof.latency(self._entries[i].name, t), threads=t)
                 for i, t in self._pair]
        self._selector = Selector(cands, quantile)
        self._ctl = Controller(self._selector, self._budget, adapt_config, adapt=adapt)
        self.steady_after = steady_after
        self._steady_n = _NEVER if steady_after is None else steady_after
        self._steady: list[Any] = [None] * len(cands)  # built steady infers
        self._steady_asked = [False] * len(cands)
        self.clear_sessions = bool(clear_sessions) and adapt
        self._clear: list[Any] = [None] * len(cands)  # built clear infers
        self._clear_asked = [not self.clear_sessions] * len(cands)
        self._floor_ms = [c.latency.p50_ms for c in cands]
        self._run_of, self._run_len = -1, 0  # the candidate of the current run of calls in a row, its length
        self.reset_stats()
        log.info("SlimRuntime ready: %d sub-nets x threads %s on %s/%s, latency %s, serving %s at budget %.3g ms",
                 len(self._entries), [_thread_label(t) for t in self.thread_counts], self.backend, device,
                 self.latency_source, self.active.name, self._budget)

    # ------------------------------------------------------------------ load helpers
    def _setup_input(self, batch_size: int | None) -> None:
        spec = self.manifest.input
        try:
            self._dtype = np.dtype(spec.dtype)
        except TypeError:
            raise ArtifactError(f"manifest.json: unknown input dtype {spec.dtype!r}") from None
        self._rank = len(spec.shape)
        b0 = spec.shape[0] if spec.shape else None
        self._fixed_batch = b0 if isinstance(b0, int) and not self.manifest.dynamic_batch else None
        rest = spec.shape[1:]
        self._feat = tuple(rest) if all(isinstance(d, int) for d in rest) else None
        if batch_size is None:
            batch_size = self._fixed_batch or 1
        if batch_size < 1 or (self._fixed_batch is not None and batch_size != self._fixed_batch):
            raise ConfigError(f"batch_size {batch_size} invalid: the artifact was exported for batch "
                              f"{self._fixed_batch or 'any >= 1'}")
        self.batch_size = batch_size

    def _open_runners(self, extra: dict[str, Any]) -> None:
        for t in self.thread_counts:
            opened = open_runners(self.root, self.manifest, self.device, self.backend, threads=t, extra=extra)
            self._runners.extend(opened.runners.values())  # extended at once: close() sees every loaded runner
            self.precision = opened.precision

    def _warm_up(self, runs: int = 3) -> None:
        # A session's first runs are slow (allocations, kernel selection): keep them out of the slowdown estimate.
        if self._feat is None:
            return
        x = np.zeros((self.batch_size, *self._feat), dtype=self._dtype)
        for r in self._runners:
            for _ in range(runs):
                r.infer(x)

    def _fingerprint(self) -> DeviceFingerprint:
        return device_fingerprint(self.backend, self._runners[0].providers, self.threads, self.precision,
                                  self.batch_size)

    def _latency(
        self, measure: bool, save: bool, runs: int, seconds: float
    ) -> tuple[LatencyProfile, Literal["stored", "measured"]]:
        fid = self.fingerprint.id()
        names = {s.name for s in self.manifest.subnets}
        extra = self.thread_counts[1:]

        def covers(prof: LatencyProfile) -> bool:
            have = {v.threads: {s.name for s in v.subnets} for v in prof.thread_variants}
            return names <= {s.name for s in prof.subnets} and all(names <= have.get(t, set()) for t in extra)

        for prof in load_latency_profiles(self.root, self.manifest):
            if prof.fingerprint_id == fid and covers(prof):
                if prof.noisy:
                    log.warning("stored latency profile %s was marked noisy when measured", fid)
                log.info("using stored latency profile %s", fid)
                return prof, "stored"
        if not measure:
            more = f" with thread variants {extra}" if extra else ""
            raise ProfileError(f"no stored latency profile in {self.root} matches this device (fingerprint {fid}){more}"
                               f"; run `slimrt bench` here or pass measure_if_missing=True")
        log.info("no stored latency profile matches fingerprint %s: measuring %d sub-nets x %d thread counts (up to "
                 "%d rounds, %.1fs)", fid, len(names), len(self.thread_counts), runs, seconds)
        shape = [self.batch_size, *(d if isinstance(d, int) else 1 for d in self.manifest.input.shape[1:])]
        x = np.random.default_rng(0).standard_normal(shape).astype(self._dtype)
        subs = self.manifest.subnets
        n = len(subs)
        keys = [(subs[k % n].name, k // n) for k in range(len(self._runners))]
        lat = measure_latency({f"{name}@{v}": r for (name, v), r in zip(keys, self._runners, strict=True)}, x,
                              warmup=5, runs=runs, duration_s=seconds)
        per: list[list[SubnetLatency]] = [[] for _ in self.thread_counts]
        for name, v in keys:
            s = lat[f"{name}@{v}"].model_copy(update={"name": name})
            per[v].append(s)
            log.info("  %s threads %s: p50 %.3f ms, p95 %.3f ms (%d runs)", name,
                     _thread_label(self.thread_counts[v]), s.p50_ms, s.p95_ms, s.runs)
        prof = LatencyProfile(device=self.device, fingerprint=self.fingerprint, batch_size=self.batch_size,
                              created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              noisy=any(s.cv > 0.25 for s in lat.values()), subnets=per[0],
                              thread_variants=[ThreadLatency(threads=t, subnets=per[v + 1])  # type: ignore[arg-type]
                                               for v, t in enumerate(extra)])
        if save:
            try:
                add_latency_profile(self.root, prof)
            except (OSError, ArtifactError) as e:
                log.warning("could not save the latency profile into %s: %s", self.root, e)
        return prof, "measured"

    # ------------------------------------------------------------------ hot path
    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run ``x`` (validated against the manifest's input spec) on the active sub-net; return its output."""
        clock = time.perf_counter_ns
        t0 = clock()
        try:
            ok = (x.dtype == self._dtype and x.shape[1:] == self._feat
                  and (x.shape[0] == self._fixed_batch if self._fixed_batch is not None else x.shape[0] > 0))
        except (AttributeError, IndexError):
            ok = False
        if not ok or self._feat is None or self.check_finite:
            self._check_input(x)
        ctl = self._ctl
        i, feasible, budget = ctl.decision  # one read: this call runs entirely on candidate i, under this budget
        f = self._steady[i]
        steady = f is not None and self._run_of == i and self._run_len >= self._steady_n
        clear = False
        if not steady:
            f = self._clear[i]
            clear = f is not None and ctl.clear
            if not clear:
                f = self._infers[i]
        ti = clock()
        y = f(x)
        t1 = clock()
        ms = (t1 - ti) * 1e-6
        with self._lock:
            if i == self._run_of:
                self._run_len += 1
            else:
                self._run_of, self._run_len = i, 1
            if steady or clear:
                if steady:
                    self._steady_calls += 1
                else:
                    self._clear_calls += 1
                # the profile describes the regular session (what contention lands on): a faster call must not
                # pull the slowdown estimate, hence every other sub-net's prediction, below it
                ms = max(ms, self._floor_ms[i])
            elif ctl.clear and not self._clear_asked[i] and not self._closed:
                self._start_build(i, "clear")
            if not steady and self._run_len == self._steady_n and not self._steady_asked[i] and not self._closed:
                self._start_build(i, "steady")
            self._calls[i] += 1
            missed = t1 - t0 > budget * 1e6
            if missed:
                self._misses[i] += 1
            if not feasible:
                self._infeasible += 1
                # a budget replaced during the call is not warned about: the next call reports on the new one
                if not self._warned and budget == self._budget:
                    self._warn_infeasible(i, budget)
            ctl.observe(i, ms, missed)
        return y

    def _check_input(self, x: Any) -> None:
        if self._closed:
            raise SlimrtError("this SlimRuntime is closed")
        spec = self.manifest.input
        want = f"{spec.dtype} {list(spec.shape)}"
        if not isinstance(x, np.ndarray):
            raise InputError(f"expected a numpy.ndarray {want} for input {spec.name!r}, received {type(x).__name__}")
        if x.ndim != self._rank:
            raise InputError(f"expected rank {self._rank} ({want}), received rank {x.ndim} shape {list(x.shape)}")
        if x.dtype != self._dtype:
            raise InputError(f"expected dtype {spec.dtype} ({want}), received {x.dtype}; "
                             f"convert with x.astype(np.{self._dtype.name})")
        for axis, (want_d, got_d) in enumerate(zip(spec.shape, x.shape, strict=True)):
            if axis == 0:
                if self._fixed_batch is not None and got_d != self._fixed_batch:
                    raise InputError(f"expected batch {self._fixed_batch} ({want}), received batch {got_d}: the "
                                     "artifact was exported for a fixed batch (re-export with --dynamic-batch)")
                if got_d < 1:
                    raise InputError(f"expected batch >= 1 ({want}), received shape {list(x.shape)}")
            elif isinstance(want_d, int) and got_d != want_d:
                raise InputError(f"expected shape {list(spec.shape)}, received {list(x.shape)} (axis {axis})")
        if self.check_finite and not np.isfinite(x).all():
            raise InputError(f"input {spec.name!r} holds {int((~np.isfinite(x)).sum())} non-finite value(s) "
                             "(NaN or infinity)")

    def _warn_infeasible(self, i: int, budget: float) -> None:
        self._warned = True
        pred = self._ctl.predicted_ms(i)
        k, t = self._pair[i]
        on = f", threads {_thread_label(t)}" if len(self.thread_counts) > 1 else ""
        warnings.warn(f"budget {budget:.3g} ms is below the predicted latency of every sub-net; serving the "
                      f"fastest ({self._entries[k].name}{on}, predicted {pred:.3g} ms)", BudgetInfeasibleWarning,
                      stacklevel=3)

    # ------------------------------------------------------------------ steady and clear sessions
    def _start_build(self, i: int, kind: Literal["steady", "clear"]) -> None:
        """Build candidate ``i``'s ``kind`` session in a background thread (caller holds the lock)."""
        (self._steady_asked if kind == "steady" else self._clear_asked)[i] = True
        t = threading.Thread(target=self._build, args=(i, kind), name=f"slimrt-{kind}-{i}", daemon=True)
        self._builders.append(t)
        t.start()

    def _build(self, i: int, kind: Literal["steady", "clear"]) -> bool:
        runner = self._runners[i]
        try:
            f = runner.steady_infer() if kind == "steady" else runner.clear_infer()
            if f is not None and self._feat is not None:
                x = np.zeros((self.batch_size, *self._feat), dtype=self._dtype)
                for _ in range(3):  # first runs are slow (allocations): not on a served call
                    f(x)
        except Exception as e:  # the regular session keeps serving
            log.warning("could not open a %s session for %s: %s", kind, self._entries[self._pair[i][0]].name, e)
            return False
        if f is None:
            return False
        with self._lock:
            if self._closed:
                return False
            (self._steady if kind == "steady" else self._clear)[i] = f
        return True

    def _prepare(self, names: Sequence[str] | None, kind: Literal["steady", "clear"]) -> int:
        if names is not None:
            known = {s.name for s in self._entries}
            bad = [n for n in names if n not in known]
            if bad:
                raise ConfigError(f"no sub-net {bad[0]!r}; the artifact has {sorted(known)}")
        want = set(names) if names is not None else None
        asked = self._steady_asked if kind == "steady" else self._clear_asked
        for k, (i, _t) in enumerate(self._pair):
            if want is not None and self._entries[i].name not in want:
                continue
            with self._lock:
                if asked[k] or self._closed:
                    continue
                asked[k] = True
            self._build(k, kind)
        return sum(f is not None for f in (self._steady if kind == "steady" else self._clear))

    def prepare_steady(self, names: Sequence[str] | None = None) -> int:
        """Build now (in this thread) the steady sessions of ``names`` (default: every sub-net) at every thread
        count, instead of on first need; returns how many are ready. Each costs about one more session's memory."""
        return self._prepare(names, "steady")

    def prepare_clear(self, names: Sequence[str] | None = None) -> int:
        """Build now (in this thread) the clear sessions of ``names`` (default: every sub-net) at every thread
        count, instead of on first need; returns how many are ready (0 with ``clear_sessions=False``)."""
        return self._prepare(names, "clear")

    def wait_steady(self, timeout: float | None = None) -> bool:
        """Wait for steady and clear sessions being built in the background; True when none is still being
        built."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            builders = list(self._builders)
        for t in builders:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in builders)

    @property
    def clear_ready(self) -> list[tuple[str, int | None]]:
        """The (sub-net, threads) pairs whose clear session is built."""
        return [(self._entries[i].name, t) for (i, t), f in zip(self._pair, self._clear, strict=True)
                if f is not None]

    @property
    def steady_ready(self) -> list[tuple[str, int | None]]:
        """The (sub-net, threads) pairs whose steady session is built."""
        return [(self._entries[i].name, t) for (i, t), f in zip(self._pair, self._steady, strict=True)
                if f is not None]

    # ------------------------------------------------------------------ public state
    @property
    def budget_ms(self) -> float:
        """Latency budget (ms); setting it takes effect at the next call and reloads nothing."""
        return self._budget

    @budget_ms.setter
    def budget_ms(self, value: float) -> None:
        b = check_budget(value)
        with self._lock:
            self._budget = b
            self._warned = False
            self._ctl.set_budget(b)

    def _info(self, k: int) -> SubnetInfo:
        i, t = self._pair[k]
        s = self._entries[i]
        return SubnetInfo(name=s.name, macs=s.macs, params=s.params, accuracy=self._accuracy[i],
                          latency=self._selector.candidates[k].latency, predicted_ms=self._ctl.predicted_ms(k),
                          threads=t)

    @property
    def active(self) -> SubnetInfo:
        """The sub-net (and thread count) that will serve the next call."""
        return self._info(self._ctl.active)

    @property
    def active_name(self) -> str:
        """Name of the sub-net that will serve the next call (cheap: no model built)."""
        return self._entries[self._pair[self._ctl.active][0]].name

    @property
    def active_threads(self) -> int | None:
        """Thread count of the session that will serve the next call (None: the backend's default)."""
        return self._pair[self._ctl.active][1]

    @property
    def labels(self) -> list[str] | None:
        """Class names from the manifest (output index i is ``labels[i]``); None when the artifact has none."""
        return None if self.manifest.labels is None else list(self.manifest.labels)

    @property
    def subnets(self) -> list[SubnetInfo]:
        """Every sub-net (manifest order: largest first) at the primary thread count, with accuracy and latency."""
        return [self._info(i) for i in range(len(self._entries))]

    @property
    def variants(self) -> list[SubnetInfo]:
        """Every (sub-net, threads) pair the runtime can serve: the primary thread count first."""
        return [self._info(k) for k in range(len(self._pair))]

    @property
    def slowdown(self) -> float:
        """Current estimate of how much slower than profiled the device runs (for the active thread count)."""
        return self._ctl.slowdown

    @property
    def slowdowns(self) -> dict[int | None, float]:
        """Current slowdown estimate per thread count."""
        return self._ctl.slowdowns

    @property
    def profile(self) -> LatencyProfile:
        """Deprecated alias of :attr:`latency_profile` (a device profile is a different thing)."""
        warnings.warn("SlimRuntime.profile is deprecated; use SlimRuntime.latency_profile", DeprecationWarning,
                      stacklevel=2)
        return self.latency_profile

    def runner(self, name: str, threads: int | None = None) -> Runner:
        """The runner of sub-net ``name`` (e.g. to compare outputs), at the primary or the given thread count."""
        t = self.thread_counts[0] if threads is None else threads
        for (i, tk), r in zip(self._pair, self._runners, strict=True):
            if self._entries[i].name == name and tk == t:
                return r
        if t not in self.thread_counts:
            raise KeyError(f"no thread count {threads!r}; this runtime serves {self.thread_counts}")
        raise KeyError(f"no sub-net {name!r}; the artifact has {[s.name for s in self._entries]}")

    def entry(self, name: str) -> SubnetEntry:
        return self.manifest.subnet(name)

    def stats(self) -> RuntimeStats:
        """Calls and misses per sub-net, switches, slowdown estimate, budget-infeasible calls."""
        with self._lock:
            names = [s.name for s in self._entries]
            calls, misses = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
            by_threads = {_thread_label(t): 0 for t in self.thread_counts}
            for (i, t), c, m in zip(self._pair, self._calls, self._misses, strict=True):
                calls[names[i]] += c
                misses[names[i]] += m
                by_threads[_thread_label(t)] += c
            return RuntimeStats(
                calls=calls, misses=misses, total_calls=sum(self._calls), total_misses=sum(self._misses),
                switches=self._ctl.switches - self._switch0, slowdown=self._ctl.slowdown,
                budget_infeasible=self._infeasible, budget_ms=self._budget, active=self.active_name,
                latency_source=self.latency_source, backend=self.backend, device=self.device,
                active_threads=self.active_threads, calls_by_threads=by_threads,
                slowdown_by_threads={_thread_label(t): v for t, v in self._ctl.slowdowns.items()},
                steady_calls=self._steady_calls, clear_calls=self._clear_calls, budget_margin=self._ctl.margin,
                up_patience=self._ctl.patience,
            )

    def reset_stats(self) -> None:
        """Zero every counter of :meth:`stats` (the slowdown estimate is kept)."""
        n = len(self._pair)
        with self._lock:
            self._calls = [0] * n
            self._misses = [0] * n
            self._infeasible = 0
            self._steady_calls = 0
            self._clear_calls = 0
            self._switch0 = self._ctl.switches

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Release every session (steady ones too, after waiting for any being built). Later calls raise
        SlimrtError."""
        with self._lock:
            self._closed = True
            builders = list(self._builders)
        for t in builders:
            if t is not threading.current_thread():
                t.join()
        for r in self._runners:
            r.close()
        if hasattr(self, "_steady"):
            self._steady = [None] * len(self._steady)
            self._clear = [None] * len(self._clear)

        def closed(_x: np.ndarray) -> np.ndarray:
            raise SlimrtError("this SlimRuntime is closed")

        self._infers = [closed] * len(self._runners)

    def __enter__(self) -> SlimRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"active={self.active_name}"
        return f"SlimRuntime({str(self.root)!r}, budget_ms={self._budget}, device={self.device!r}, {state})"
