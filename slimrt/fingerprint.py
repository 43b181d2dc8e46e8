"""Device fingerprint: what must match for a stored latency profile to describe this machine (no torch import).

Only the library version of the backend in use is recorded (onnxruntime for ``onnxruntime``, TensorRT for
``tensorrt``, torch for ``torch``): a profile benched on a machine that also has torch stays valid on a
deployment box without it. GPU name and driver are recorded only when the backend runs on a GPU.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import shutil
import subprocess
from importlib import metadata

from slimrt.schema import DeviceFingerprint

__all__ = ["device_fingerprint", "cpu_model", "gpu_info", "jetson_power_mode", "package_version", "uses_gpu"]

log = logging.getLogger(__name__)

_CPU_PROVIDERS = {"CPUExecutionProvider", "cpu"}
_BACKEND_PACKAGES = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-libs"),
    "torch": ("torch",),
}


def package_version(*dists: str) -> str | None:
    """Version of the first installed distribution among ``dists`` (without importing it), else None."""
    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (x86 'model name', ARM 'Hardware'/device-tree model), else platform."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    try:
        with open("/proc/device-tree/model", encoding="utf-8", errors="replace") as f:
            model = f.read().strip("\x00 \n")
            if model:
                return model
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _run(cmd: list[str], timeout: float = 3.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        log.debug("%s failed: %s", cmd[0], e)
        return None
    return out.stdout if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def gpu_info() -> tuple[str | None, str | None]:
    """(name, driver version) of the first NVIDIA GPU via ``nvidia-smi``, else (None, None)."""
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if out:
        first = out.strip().splitlines()[0] if out.strip() else ""
        name, _, driver = first.partition(",")
        if name.strip():
            return name.strip(), driver.strip() or None
    try:  # Jetson: no nvidia-smi on older JetPacks; the SoC model stands in for the GPU name.
        with open("/proc/device-tree/model", encoding="utf-8", errors="replace") as f:
            model = f.read().strip("\x00 \n")
            if "jetson" in model.lower():
                return model, None
    except OSError:
        pass
    return None, None


@functools.lru_cache(maxsize=1)
def jetson_power_mode() -> str | None:
    """Jetson power mode name from ``nvpmodel -q`` (e.g. 'MAXN'), else None."""
    out = _run(["nvpmodel", "-q"])
    if not out:
        return None
    for line in out.splitlines():
        if "Power Mode" in line:
            return line.split(":", 1)[-1].strip() or None
    return None


def uses_gpu(backend: str, providers: list[str]) -> bool:
    """True when ``backend`` with ``providers`` runs on a GPU."""
    return backend == "tensorrt" or any(p not in _CPU_PROVIDERS for p in providers)


def device_fingerprint(
    backend: str, providers: list[str], threads: int | None, precision: str = "fp32", batch_size: int = 1
) -> DeviceFingerprint:
    """Fingerprint of this machine for ``backend`` run with ``providers`` (ORT provider names, or ['cpu']/['cuda'])."""
    gpu = uses_gpu(backend, providers)
    gpu_name, gpu_driver = gpu_info() if gpu else (None, None)
    return DeviceFingerprint(
        cpu_model=cpu_model(),
        cpu_cores=os.cpu_count() or 1,
        threads=threads,
        gpu_name=gpu_name,
        gpu_driver=gpu_driver,
        onnxruntime=package_version(*_BACKEND_PACKAGES["onnxruntime"]) if backend == "onnxruntime" else None,
        tensorrt=package_version(*_BACKEND_PACKAGES["tensorrt"]) if backend == "tensorrt" else None,
        torch=package_version(*_BACKEND_PACKAGES["torch"]) if backend == "torch" else None,
        power_mode=jetson_power_mode(),  # nvpmodel also caps CPU clocks, so it matters for CPU too
        backend=backend,
        providers=list(providers),
        precision=precision,
        batch_size=batch_size,
    )
