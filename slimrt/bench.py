"""Measure every sub-net's latency on this device with a :class:`~slimrt.schema.DeviceProfile` and store it.

``run_bench`` is what ``slimrt bench``, the demo and the benchmarks call: device checks, one runner per sub-net,
warm-up and timed runs interleaved round-robin (:func:`slimrt.runtime.measure.measure_latency`), a
:class:`~slimrt.schema.LatencyProfile` keyed by the device fingerprint saved into the artifact, and a
:class:`BenchResult` for tables, JSON and plots.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from slimrt.errors import BackendUnavailableError, InputError, SlimrtError
from slimrt.schema import DeviceFingerprint, DeviceProfile, LatencyProfile, Manifest, SubnetLatency

__all__ = [
    "DeviceCheck",
    "BenchSubnet",
    "BenchResult",
    "BackendPlan",
    "run_bench",
    "run_device_checks",
    "clocks_locked",
    "plan_backend",
    "bench_input",
    "speedups",
    "plot_bench",
]

log = logging.getLogger(__name__)


class DeviceCheck(BaseModel):
    """Outcome of one device check named in a profile (``ok`` False on a warning-level check is a warning)."""

    name: str
    ok: bool
    detail: str


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
    profile: str
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
    saved_to: str | None = None
    latency_profile: LatencyProfile

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the documented keys first (device, fingerprint, subnets ...), then the rest."""
        d = self.model_dump(mode="json", exclude={"latency_profile"})
        return {"device": d.pop("device"), "fingerprint_id": d.pop("fingerprint_id"),
                "fingerprint": d.pop("fingerprint"), "subnets": d.pop("subnets"), **d}


# ----------------------------------------------------------------------------------------- device checks


def _cuda_gpu_present() -> tuple[bool, str]:
    from slimrt.fingerprint import gpu_info

    name, driver = gpu_info()
    if name:
        return True, f"{name} (driver {driver or 'unknown'})"
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return True, f"{torch.cuda.get_device_name(0)} (via torch)"
    return False, "no NVIDIA GPU found (nvidia-smi reports none and torch sees no CUDA device)"


def _tensorrt_present() -> tuple[bool, str]:
    has_trt = importlib.util.find_spec("tensorrt") is not None
    ort_trt = False
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        ort_trt = "TensorrtExecutionProvider" in ort.get_available_providers()
    if has_trt or ort_trt:
        parts = (["tensorrt package"] if has_trt else []) + (["ONNX Runtime TensorRT EP"] if ort_trt else [])
        return True, " and ".join(parts)
    return False, (
        "TensorRT not found: install it (pip install tensorrt; on Jetson, JetPack's python3-libnvinfer) "
        "or onnxruntime-gpu built with the TensorRT execution provider"
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def clocks_locked(sys_root: str | Path = "/sys") -> tuple[bool | None, str]:
    """Whether CPU and GPU clocks are pinned (what ``sudo jetson_clocks`` does), read from sysfs.

    CPU: every ``cpufreq`` policy runs the ``performance`` governor or has min == max frequency. GPU: every devfreq
    device whose name mentions the GPU (``gpu``, ``gv11b``, ``ga10b``, ``gp10b``, ``17000000``) has min == max.

    Returns:
        (True/False, detail), or (None, detail) when sysfs exposes no frequency information.
    """
    root = Path(sys_root)
    unlocked: list[str] = []
    seen = 0
    for pol in sorted((root / "devices/system/cpu/cpufreq").glob("policy*")):
        gov = _read(pol / "scaling_governor")
        lo, hi = _read(pol / "scaling_min_freq"), _read(pol / "scaling_max_freq")
        if gov is None and lo is None:
            continue
        seen += 1
        if gov != "performance" and (lo is None or lo != hi):
            unlocked.append(f"CPU {pol.name}: governor {gov}, {lo}-{hi} kHz")
    gpu_markers = ("gpu", "gv11b", "ga10b", "gp10b", "gk20a", "17000000")
    for dev in sorted((root / "class/devfreq").glob("*")):
        name = dev.name.lower() + " " + (_read(dev / "name") or "").lower()
        if not any(m in name for m in gpu_markers):
            continue
        lo, hi = _read(dev / "min_freq"), _read(dev / "max_freq")
        if lo is None or hi is None:
            continue
        seen += 1
        if lo != hi:
            unlocked.append(f"GPU {dev.name}: {lo}-{hi} Hz")
    if not seen:
        return None, f"no cpufreq/devfreq information under {root}"
    if unlocked:
        return False, "clocks not locked (" + "; ".join(unlocked) + "); run `sudo jetson_clocks` for stable numbers"
    return True, f"clocks locked ({seen} clock domain(s) pinned)"


def _power_mode() -> tuple[bool, str, str | None]:
    from slimrt.fingerprint import jetson_power_mode

    mode = jetson_power_mode()
    if mode:
        return True, f"power mode {mode} (nvpmodel -q); profiles taken in one mode under-predict a slower one", mode
    hint = "nvpmodel not found" if shutil.which("nvpmodel") is None else "`nvpmodel -q` gave no power mode"
    return False, f"{hint}: power mode not recorded in the fingerprint", None


def _jetson_clocks_show() -> str | None:
    """``jetson_clocks --show`` output when it runs without a password (informational)."""
    if shutil.which("jetson_clocks") is None:
        return None
    try:
        out = subprocess.run(["jetson_clocks", "--show"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def run_device_checks(profile: DeviceProfile, *, sys_root: str | Path = "/sys") -> tuple[list[DeviceCheck], list[str]]:
    """Run the profile's device checks.

    Returns:
        (checks, warnings). ``cuda_available`` and ``tensorrt_available`` are hard requirements and raise;
        ``jetson_power_mode`` and ``jetson_clocks`` only warn.

    Raises:
        BackendUnavailableError: a required GPU or TensorRT is missing (the message says what to do).
    """
    checks: list[DeviceCheck] = []
    warnings: list[str] = []
    for name in profile.checks:
        if name == "cuda_available":
            ok, detail = _cuda_gpu_present()
            if not ok:
                raise BackendUnavailableError(
                    f"device profile {profile.name!r} needs a CUDA GPU: {detail}. Bench on a GPU machine, or use "
                    "--device cpu."
                )
        elif name == "tensorrt_available":
            ok, detail = _tensorrt_present()
            if not ok:
                raise BackendUnavailableError(f"device profile {profile.name!r} needs TensorRT: {detail}.")
        elif name == "jetson_power_mode":
            ok, detail, _ = _power_mode()
        elif name == "jetson_clocks":
            locked, detail = clocks_locked(sys_root)
            ok = bool(locked)
            show = _jetson_clocks_show() if not ok else None
            if show:
                log.info("jetson_clocks --show:\n%s", show)
        else:  # pragma: no cover - the schema's Literal forbids other names
            raise SlimrtError(f"unknown device check {name!r}")
        checks.append(DeviceCheck(name=name, ok=ok, detail=detail))
        if not ok:
            warnings.append(f"{name}: {detail}")
            log.warning("%s: %s", name, detail)
    return checks, warnings


# ----------------------------------------------------------------------------------------- backend choice


def plan_backend(profile: DeviceProfile, manifest: Manifest) -> BackendPlan:
    """Pick the backend for ``profile`` here: the profile's backend if usable, else its ``fallback_backend``.

    Uses the runtime's own resolution (:func:`slimrt.runtime.runtime.resolve_backend`), so the bench measures what
    ``SlimRuntime`` will run. cpu: ONNX Runtime on CPU. cuda: ONNX Runtime GPU (TensorRT EP, else CUDA EP) if
    installed, else the torch backend on CUDA with the artifact's ``torch.export`` programs. jetson: native TensorRT
    engines built for this GPU when the artifact has them, else ONNX Runtime's TensorRT EP.

    Raises:
        BackendUnavailableError: neither the backend nor its fallback can run here (says what to install).
    """
    from slimrt.backends import backend_info
    from slimrt.errors import ArtifactError
    from slimrt.runtime.runtime import _matching_engines, resolve_backend

    order: list[str] = [profile.backend]
    if profile.fallback_backend is not None and profile.fallback_backend != profile.backend:
        order.append(profile.fallback_backend)
    reasons: list[str] = []
    for wanted in order:
        try:
            backend = resolve_backend(manifest, profile.device, wanted)
        except (BackendUnavailableError, ArtifactError) as e:
            reasons.append(f"{wanted}: {e}")
            log.info("backend %s unusable for profile %s: %s", wanted, profile.name, e)
            continue
        kind = backend_info(backend).model_kind
        es = _matching_engines(manifest) if kind == "engine" else None
        return BackendPlan(backend=backend, device=profile.device, model_kind=kind,
                           engine_tag=es.device_tag if es is not None else None, reason="; ".join(reasons))
    raise BackendUnavailableError(f"no backend of device profile {profile.name!r} can run here: " + " | ".join(reasons))


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


def _open_runners(root: Path, manifest: Manifest, plan: BackendPlan, threads: int | None, precision: str,
                  stack: ExitStack) -> dict[str, Any]:
    """One loaded runner per sub-net (largest first), opened the way ``SlimRuntime`` opens them."""
    from slimrt.artifact import resolve_inside
    from slimrt.backends import RunnerOptions, create_runner

    engines = next((e for e in manifest.engines if e.device_tag == plan.engine_tag), None)
    runners: dict[str, Any] = {}
    for s in manifest.subnets:
        onnx_path = resolve_inside(root, s.onnx.path)
        extra: dict[str, Any] = {}
        if plan.model_kind == "onnx":
            path = onnx_path
        elif plan.model_kind == "torch_program":
            assert s.torch_program is not None
            path = resolve_inside(root, s.torch_program.path)
        else:
            ref = next((e for e in engines.engines if e.subnet == s.name), None) if engines else None
            if ref is None:
                raise BackendUnavailableError(f"engine set {plan.engine_tag} has no engine for sub-net {s.name!r}")
            path = resolve_inside(root, ref.path)
            extra["weight_stripped"] = ref.weight_stripped
        opts = RunnerOptions(device=plan.device, threads=threads, input_name=manifest.input.name,
                             output_name=manifest.output.name, onnx_path=onnx_path, precision=precision, extra=extra)
        runner = create_runner(plan.backend, path, opts)
        stack.callback(runner.close)
        runners[s.name] = runner
    return runners


def _run_precision(plan: BackendPlan, manifest: Manifest) -> str:
    """Precision the runtime will run: the engines' for native TensorRT, fp32 otherwise (as ``SlimRuntime``)."""
    if plan.model_kind == "engine":
        es = next((e for e in manifest.engines if e.device_tag == plan.engine_tag), None)
        return es.precision if es is not None else "fp32"
    return "fp32"


def speedups(lat: dict[str, SubnetLatency], full: str) -> dict[str, float]:
    """p50 of the ``full`` sub-net over each sub-net's p50."""
    ref = lat[full].p50_ms
    return {k: ref / v.p50_ms for k, v in lat.items()}


def run_bench(
    artifact: str | Path,
    profile: DeviceProfile,
    *,
    batch_size: int | None = None,
    runs: int | None = None,
    threads: int | None = None,
    save: bool = True,
    progress: bool = True,
) -> BenchResult:
    """Bench every sub-net of ``artifact`` with ``profile`` and (unless ``save`` is False) store the profile in it.

    Args:
        artifact: artifact directory.
        profile: the device profile (see :func:`slimrt.profiles_io.load_profile`).
        batch_size: batch to measure (default: the profile's first batch size).
        runs: timed runs per sub-net (default: the profile's); ``profile.duration_s`` still bounds the time.
        threads: intra-op threads (default: the profile's; None lets the backend choose).
        save: write ``latency/<fingerprint>.json`` into the artifact and list it in the manifest.
        progress: show a rich progress bar while measuring.

    Raises:
        ArtifactError: the artifact fails verification.
        BackendUnavailableError: the device or backend the profile needs is missing.
        InputError: the batch size does not fit the artifact.
    """
    from slimrt.artifact import add_latency_profile, verify_artifact
    from slimrt.fingerprint import device_fingerprint
    from slimrt.runtime.measure import measure_latency

    root = Path(artifact)
    manifest = verify_artifact(root)
    bs = batch_size if batch_size is not None else profile.batch_sizes[0]
    if bs < 1:
        raise InputError(f"batch size must be >= 1, got {bs}")
    n_runs = runs if runs is not None else profile.runs
    if n_runs < 1:
        raise InputError(f"runs must be >= 1, got {n_runs}")
    n_threads = threads if threads is not None else profile.threads
    if n_threads is not None and n_threads < 1:
        raise InputError(f"threads must be >= 1 (or unset), got {n_threads}")
    x = bench_input(manifest, bs)

    checks, warnings = run_device_checks(profile)
    plan = plan_backend(profile, manifest)
    if plan.reason:
        warnings.append(f"using fallback backend {plan.backend}: {plan.reason}")
    precision = _run_precision(plan, manifest)
    if precision != profile.precision:
        log.info("profile asks for %s; %s runs %s here (as SlimRuntime will)", profile.precision, plan.backend,
                 precision)
    names = [s.name for s in manifest.subnets]
    with ExitStack() as stack:
        runners = _open_runners(root, manifest, plan, n_threads, precision, stack)
        providers = list(runners[names[0]].providers)
        log.info("benching %d sub-nets with %s (%s), batch %d, threads %s", len(names), plan.backend,
                 ", ".join(providers), bs, n_threads or "auto")
        lat = _measure(measure_latency, runners, x, profile, n_runs, progress)

    fp = device_fingerprint(plan.backend, providers, n_threads, precision, bs)
    noisy_names = [n for n in names if lat[n].cv > profile.noisy_cv]
    if noisy_names:
        warnings.append(
            f"noisy run: cv above {profile.noisy_cv:g} for {noisy_names}; close other programs or lock clocks and rerun"
        )
    lp = LatencyProfile(
        device=profile.device, fingerprint=fp, batch_size=bs, created=datetime.now(timezone.utc).isoformat(),
        noisy=bool(noisy_names), subnets=[lat[n] for n in names],
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
            noisy=s.name in noisy_names, speedup_p50=sp[s.name],
        )
        for s in manifest.subnets
    ]
    return BenchResult(
        artifact=str(root), device=profile.device, profile=profile.name, backend=plan.backend, providers=providers,
        fingerprint=fp, fingerprint_id=fp.id(), batch_size=bs, threads=n_threads, warmup=profile.warmup,
        runs=n_runs, duration_s=profile.duration_s, noisy=bool(noisy_names), checks=checks, warnings=warnings,
        subnets=rows, saved_to=saved_to, latency_profile=lp,
    )


def _measure(measure_latency: Any, runners: dict[str, Any], x: np.ndarray, profile: DeviceProfile, runs: int,
             progress: bool) -> dict[str, SubnetLatency]:
    """Call the runtime's interleaved measurement, under a rich progress bar when asked.

    ``measure_latency`` reports no per-round progress, so the bar shows elapsed time against the duration bound.
    """
    kwargs: dict[str, Any] = {"warmup": profile.warmup, "runs": runs, "duration_s": profile.duration_s}
    if not progress:
        return measure_latency(runners, x, **kwargs)
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bound = f", at most {profile.duration_s:g}s" if profile.duration_s else ""
    desc = f"measuring {len(runners)} sub-nets: {profile.warmup} warm-up + {runs} timed rounds{bound}"
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  transient=True) as bar:
        bar.add_task(desc, total=None)
        return measure_latency(runners, x, **kwargs)


def plot_bench(result: BenchResult, out: str | Path) -> Path:
    """Accuracy (test, else validation) vs p95 latency of the benched sub-nets, Pareto front highlighted.

    Raises:
        SlimrtError: no sub-net has an accuracy in the manifest.
    """
    from slimrt.plot import plot_accuracy_vs_latency

    pts = [(s.name, s.p95_ms, s.test_accuracy if s.test_accuracy is not None else s.val_accuracy)
           for s in result.subnets]
    have = [(n, lat, acc) for n, lat, acc in pts if acc is not None]
    if not have:
        raise SlimrtError("cannot plot accuracy vs latency: no sub-net of the artifact has an accuracy in its manifest")
    if len(have) < len(pts):
        log.warning("plot leaves out sub-nets without accuracy: %s", [n for n, _, a in pts if a is None])
    fp = result.fingerprint
    where = fp.gpu_name or fp.cpu_model
    title = (f"{Path(result.artifact).name}: accuracy vs p95 latency "
             f"({result.backend}, {where}, batch {result.batch_size})")
    return plot_accuracy_vs_latency([n for n, _, _ in have], [lat for _, lat, _ in have],
                                    [float(a) for _, _, a in have], out, title=title)
