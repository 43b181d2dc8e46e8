"""Device checks a device profile asks for before a bench, and a CUDA probe that needs no torch.

``cuda_available`` and ``tensorrt_available`` are hard requirements (BackendUnavailableError saying what to do);
``jetson_power_mode`` and ``jetson_clocks`` only warn, because a bench without them is valid but less stable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import logging
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel

from slimrt.errors import BackendUnavailableError, SlimrtError
from slimrt.schema import DeviceProfile

__all__ = ["DeviceCheck", "run_device_checks", "clocks_locked", "cuda_devices"]

log = logging.getLogger(__name__)


class DeviceCheck(BaseModel):
    """Outcome of one device check named in a profile (``ok`` False on a warning-level check is a warning)."""

    name: str
    ok: bool
    detail: str


def cuda_devices() -> list[str] | None:
    """Names of the CUDA devices the NVIDIA driver reports (its ``libcuda`` through ctypes; no torch, no toolkit).

    Returns:
        The device names (empty when the driver loads but sees no device), or None when no CUDA driver library is
        installed.
    """
    candidates = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"]
    found = ctypes.util.find_library("cuda")
    if found:
        candidates.append(found)
    lib = None
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return None
    try:
        if lib.cuInit(0) != 0:
            return []
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return []
        names: list[str] = []
        for i in range(count.value):
            dev = ctypes.c_int(0)
            buf = ctypes.create_string_buffer(256)
            if lib.cuDeviceGet(ctypes.byref(dev), i) == 0 and lib.cuDeviceGetName(buf, len(buf), dev) == 0:
                names.append(buf.value.decode("utf-8", "replace"))
            else:
                names.append(f"CUDA device {i}")
        return names
    except (AttributeError, OSError):  # a driver library without the expected entry points
        return []


def _cuda_gpu_present() -> tuple[bool, str]:
    from slimrt.fingerprint import gpu_info

    name, driver = gpu_info()
    if name:
        return True, f"{name} (driver {driver or 'unknown'})"
    devices = cuda_devices()
    if devices:
        return True, f"{devices[0]} (via the CUDA driver)"
    why = "no CUDA driver library" if devices is None else "the CUDA driver reports no device"
    return False, f"no NVIDIA GPU found (nvidia-smi reports none and {why})"


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


def run_device_checks(device_profile: DeviceProfile, *, sys_root: str | Path = "/sys"
                      ) -> tuple[list[DeviceCheck], list[str]]:
    """Run the device checks ``device_profile`` names.

    Returns:
        (checks, warnings). ``cuda_available`` and ``tensorrt_available`` are hard requirements and raise;
        ``jetson_power_mode`` and ``jetson_clocks`` only warn.

    Raises:
        BackendUnavailableError: a required GPU or TensorRT is missing (the message says what to do).
    """
    checks: list[DeviceCheck] = []
    warnings: list[str] = []
    for name in device_profile.checks:
        if name == "cuda_available":
            ok, detail = _cuda_gpu_present()
            if not ok:
                raise BackendUnavailableError(
                    f"device profile {device_profile.name!r} needs a CUDA GPU: {detail}. Bench on a GPU machine, or "
                    "use --device cpu."
                )
        elif name == "tensorrt_available":
            ok, detail = _tensorrt_present()
            if not ok:
                raise BackendUnavailableError(f"device profile {device_profile.name!r} needs TensorRT: {detail}.")
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


