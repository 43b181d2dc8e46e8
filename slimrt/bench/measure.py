"""Measure every sub-net's latency on this device with a :class:`~slimrt.schema.DeviceProfile` and store it.

``run_bench`` is what ``slimrt bench``, the demo and the benchmarks call: device checks, one runner per sub-net,
warm-up and timed runs interleaved round-robin (:func:`slimrt.runtime.measure.measure_latency`), a
:class:`~slimrt.schema.LatencyProfile` keyed by the device fingerprint saved into the artifact, and a
:class:`BenchResult` for tables, JSON and plots.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from slimrt.bench.device import DeviceCheck, run_device_checks
from slimrt.errors import ArtifactError, BackendUnavailableError, InputError
from slimrt.schema import DeviceFingerprint, DeviceProfile, LatencyProfile, Manifest, SubnetLatency, ThreadLatency

__all__ = ["BenchSubnet", "BenchResult", "BackendPlan", "run_bench", "plan_backend", "bench_input", "speedups"]

log = logging.getLogger(__name__)


class BenchSubnet(BaseModel):
    """One row of a bench: the sub-net's cost and accuracy from the manifest plus its measured latency."""

    name: str
    macs: int
    params: int
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    cv: float
    runs: int
    noisy: bool
    speedup_p50: float = Field(description="full sub-net's p50 over this sub-net's p50")
    predicted_latency_ms: float | None = Field(None, description="from the artifact's latency table, if any")
    predicted_error: float | None = Field(None, description="(predicted - measured p50) / measured p50")


class BackendPlan(BaseModel):
    """Which backend measures the sub-nets, on which device, from which model files."""

    backend: str
    device: str
    model_kind: str = Field(description="onnx, engine or torch_program")
    engine_tag: str | None = None
    reason: str = ""


class BenchResult(BaseModel):
    """Everything a bench produced; ``subnets`` largest first, like the manifest."""

    artifact: str
    device: str
    device_profile: str
    backend: str
    providers: list[str]
    fingerprint: DeviceFingerprint
    fingerprint_id: str
    batch_size: int
    threads: int | None
    warmup: int
    runs: int
    duration_s: float | None
    noisy: bool
    checks: list[DeviceCheck]
    warnings: list[str]
    subnets: list[BenchSubnet]
    thread_variants: list[ThreadLatency] = Field(default_factory=list,
                                                 description="the same sub-nets at other thread counts (CPU)")
    saved_to: str | None = None
    latency_profile: LatencyProfile

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the documented keys first (device, fingerprint, subnets ...), then the rest."""
        d = self.model_dump(mode="json", exclude={"latency_profile"})
        return {"device": d.pop("device"), "fingerprint_id": d.pop("fingerprint_id"),
                "fingerprint": d.pop("fingerprint"), "subnets": d.pop("subnets"), **d}


# ----------------------------------------------------------------------------------------- backend choice


def plan_backend(device_profile: DeviceProfile, manifest: Manifest) -> BackendPlan:
    """Pick the backend for ``device_profile`` here: its backend if usable, else its ``fallback_backend``.

    Uses the runtime's own resolution (:func:`slimrt.backends.resolve_backend`), so the bench measures what
    ``SlimRuntime`` will run. cpu: ONNX Runtime on CPU. cuda: ONNX Runtime GPU (TensorRT EP, else CUDA EP) if
    installed, else the torch backend on CUDA with the artifact's ``torch.export`` programs. jetson: native TensorRT
    engines built for this GPU when the artifact has them, else ONNX Runtime's TensorRT EP.

    Raises:
        BackendUnavailableError: neither the backend nor its fallback can run here (says what to install).
    """
    from slimrt.backends import backend_info, matching_engines, resolve_backend

    prof = device_profile
    order: list[str] = [prof.backend]
    if prof.fallback_backend is not None and prof.fallback_backend != prof.backend:
        order.append(prof.fallback_backend)
    reasons: list[str] = []
    for wanted in order:
        try:
            backend = resolve_backend(manifest, prof.device, wanted)
        except (BackendUnavailableError, ArtifactError) as e:
            reasons.append(f"{wanted}: {e}")
            log.info("backend %s unusable for device profile %s: %s", wanted, prof.name, e)
            continue
        kind = backend_info(backend).model_kind
        es = matching_engines(manifest) if kind == "engine" else None
        return BackendPlan(backend=backend, device=prof.device, model_kind=kind,
                           engine_tag=es.device_tag if es is not None else None, reason="; ".join(reasons))
    raise BackendUnavailableError(f"no backend of device profile {prof.name!r} can run here: " + " | ".join(reasons))


# ----------------------------------------------------------------------------------------- measuring


def bench_input(manifest: Manifest, batch_size: int, seed: int = 0) -> np.ndarray:
    """A random input of the manifest's shape and dtype with ``batch_size`` rows.

    Raises:
        InputError: the artifact has a fixed batch that differs from ``batch_size``, or a symbolic non-batch dim.
    """
    shape = list(manifest.input.shape)
    if not shape:
        raise InputError(f"artifact input {manifest.input.name!r} has no dimensions")
    first = shape[0]
    if isinstance(first, int) and not manifest.dynamic_batch and first != batch_size:
        raise InputError(
            f"artifact was exported for batch {first}, bench asked for batch {batch_size}; "
            f"use --batch-size {first} or re-export with a dynamic batch"
        )
    shape[0] = batch_size
    if any(not isinstance(d, int) for d in shape[1:]):
        raise InputError(f"artifact input {manifest.input.name!r} has symbolic non-batch dims {shape}; "
                         "bench needs a fixed input size")
    rng = np.random.default_rng(seed)
    dtype = np.dtype(manifest.input.dtype)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, 2, size=shape).astype(dtype)


def speedups(lat: dict[str, SubnetLatency], full: str) -> dict[str, float]:
    """p50 of the ``full`` sub-net over each sub-net's p50."""
    ref = lat[full].p50_ms
    return {k: ref / v.p50_ms for k, v in lat.items()}


def run_bench(
    artifact: str | Path,
    device_profile: DeviceProfile,
    *,
    batch_size: int | None = None,
    runs: int | None = None,
    threads: int | None = None,
    thread_variants: Sequence[int] = (),
    save: bool = True,
    progress: bool = True,
) -> BenchResult:
    """Bench every sub-net of ``artifact`` as ``device_profile`` says; unless ``save`` is False store the result in it.

    Args:
        artifact: artifact directory.
        device_profile: how to bench on this device (see :func:`slimrt.bench.load_device_profile`).
        batch_size: batch to measure (default: the device profile's first batch size).
        runs: timed runs per sub-net (default: the device profile's); its ``duration_s`` still bounds the time.
        threads: intra-op threads (default: the device profile's; None lets the backend choose).
        thread_variants: more thread counts to measure every sub-net at (CPU only), interleaved with the main one
            and stored as the profile's ``thread_variants``, so ``SlimRuntime(threads=(threads, *variants))`` can
            choose (sub-net, threads) pairs.
        save: write the latency profile to ``latency/<fingerprint>.json`` in the artifact and list it in the manifest.
        progress: show a rich progress bar while measuring.

    Raises:
        ArtifactError: the artifact fails verification.
        BackendUnavailableError: the device or backend the device profile needs is missing.
        InputError: the batch size does not fit the artifact.
    """
    from slimrt.artifact import add_latency_profile, verify_artifact
    from slimrt.backends import open_runners
    from slimrt.fingerprint import device_fingerprint

    prof = device_profile
    root = Path(artifact)
    manifest = verify_artifact(root)
    bs = batch_size if batch_size is not None else prof.batch_sizes[0]
    if bs < 1:
        raise InputError(f"batch size must be >= 1, got {bs}")
    n_runs = runs if runs is not None else prof.runs
    if n_runs < 1:
        raise InputError(f"runs must be >= 1, got {n_runs}")
    n_threads = threads if threads is not None else prof.threads
    if n_threads is not None and n_threads < 1:
        raise InputError(f"threads must be >= 1 (or unset), got {n_threads}")
    variants = list(thread_variants)
    if any(t < 1 for t in variants) or len(set(variants)) != len(variants) or n_threads in variants:
        raise InputError(f"thread variants must be distinct counts >= 1 other than threads={n_threads}, got {variants}")
    x = bench_input(manifest, bs)

    checks, warnings = run_device_checks(prof)
    plan = plan_backend(prof, manifest)
    if plan.reason:
        warnings.append(f"using fallback backend {plan.backend}: {plan.reason}")
    if variants and plan.device != "cpu":
        raise InputError(f"thread variants are a CPU knob; device profile {prof.name!r} runs on {plan.device}")
    names = [s.name for s in manifest.subnets]
    opened_all = []
    try:
        for t in [n_threads, *variants]:
            opened_all.append(open_runners(root, manifest, plan.device, plan.backend, threads=t))
        opened = opened_all[0]
        precision, providers = opened.precision, opened.providers
        if precision != prof.precision:
            log.info("device profile asks for %s; %s runs %s here (as SlimRuntime will)", prof.precision,
                     plan.backend, precision)
        log.info("benching %d sub-nets with %s (%s), batch %d, threads %s%s", len(names), plan.backend,
                 ", ".join(providers), bs, n_threads or "auto", f" and {variants}" if variants else "")
        runners = {f"{n}@{v}": o.runners[n] for v, o in enumerate(opened_all) for n in names}
        measured = _measure(runners, x, prof, n_runs, progress)
    finally:
        for o in opened_all:
            o.close()
    per = [{n: measured[f"{n}@{v}"].model_copy(update={"name": n}) for n in names} for v in range(len(opened_all))]
    lat = per[0]
    tv = [ThreadLatency(threads=t, subnets=[per[v + 1][n] for n in names]) for v, t in enumerate(variants)]

    fp = device_fingerprint(plan.backend, providers, n_threads, precision, bs)
    noisy_names = [n for n in names if lat[n].cv > prof.noisy_cv]
    noisy_names += [f"{n}@{t}threads" for v, t in enumerate(variants, 1) for n in names
                    if per[v][n].cv > prof.noisy_cv]
    if noisy_names:
        warnings.append(
            f"noisy run: cv above {prof.noisy_cv:g} for {noisy_names}; close other programs or lock clocks and rerun"
        )
    lp = LatencyProfile(
        device=prof.device, fingerprint=fp, batch_size=bs, created=datetime.now(timezone.utc).isoformat(),
        noisy=bool(noisy_names), subnets=[lat[n] for n in names], thread_variants=tv,
    )
    saved_to = None
    if save:
        ref = add_latency_profile(root, lp)
        saved_to = ref.path
    sp = speedups(lat, names[0])
    rows = [
        BenchSubnet(
            name=s.name, macs=s.macs, params=s.params, val_accuracy=s.val_accuracy, test_accuracy=s.test_accuracy,
            p50_ms=lat[s.name].p50_ms, p90_ms=lat[s.name].p90_ms, p95_ms=lat[s.name].p95_ms,
            p99_ms=lat[s.name].p99_ms, mean_ms=lat[s.name].mean_ms, cv=lat[s.name].cv, runs=lat[s.name].runs,
            noisy=s.name in noisy_names, speedup_p50=sp[s.name], predicted_latency_ms=s.predicted_latency_ms,
            predicted_error=None if s.predicted_latency_ms is None
            else (s.predicted_latency_ms - lat[s.name].p50_ms) / lat[s.name].p50_ms,
        )
        for s in manifest.subnets
    ]
    return BenchResult(
        artifact=str(root), device=prof.device, device_profile=prof.name, backend=plan.backend, providers=providers,
        fingerprint=fp, fingerprint_id=fp.id(), batch_size=bs, threads=n_threads, warmup=prof.warmup,
        runs=n_runs, duration_s=prof.duration_s, noisy=bool(noisy_names), checks=checks, warnings=warnings,
        subnets=rows, thread_variants=tv, saved_to=saved_to, latency_profile=lp,
    )


def _measure(runners: dict[str, Any], x: np.ndarray, prof: DeviceProfile, runs: int,
             progress: bool) -> dict[str, SubnetLatency]:
    """Call the runtime's interleaved measurement, under a rich progress bar when asked.

    ``measure_latency`` reports no per-round progress, so the bar shows elapsed time against the duration bound.
    """
    from slimrt.runtime.measure import measure_latency

    kwargs: dict[str, Any] = {"warmup": prof.warmup, "runs": runs, "duration_s": prof.duration_s}
    if not progress:
        return measure_latency(runners, x, **kwargs)
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bound = f", at most {prof.duration_s:g}s" if prof.duration_s else ""
    desc = f"measuring {len(runners)} sub-nets: {prof.warmup} warm-up + {runs} timed rounds{bound}"
    from rich.console import Console

    from slimrt.progress import LogProgress, plain_progress_wanted

    err = Console(stderr=True)  # redirected output: periodic plain lines instead of a bar
    bar: Progress = (LogProgress(console=err) if plain_progress_wanted(err) else
                     Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                              transient=True))  # fmt: skip
    with bar:
        bar.add_task(desc, total=None)
        return measure_latency(runners, x, **kwargs)
