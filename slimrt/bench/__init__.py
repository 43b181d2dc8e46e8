"""Bench: measure every sub-net's latency on this device, as a device profile says, and store it in the artifact.

* :mod:`~slimrt.bench.measure`: :func:`run_bench` (backend plan, runners from :func:`slimrt.backends.open_runners`,
  interleaved timing, the :class:`~slimrt.schema.LatencyProfile` saved into the artifact, a :class:`BenchResult`).
* :mod:`~slimrt.bench.device`: the device checks a profile names (GPU present, TensorRT, Jetson clocks and power
  mode), with a CUDA probe that does not import torch.
* :mod:`~slimrt.bench.device_profiles`: loading :class:`~slimrt.schema.DeviceProfile` TOML files.

The plot of a bench lives with the other plots: :func:`slimrt.plot.plot_bench`. Nothing here imports torch.
"""

from __future__ import annotations

from slimrt.bench.device import DeviceCheck, clocks_locked, cuda_devices, run_device_checks
from slimrt.bench.device_profiles import list_device_profiles, load_device_profile, parse_device_profile
from slimrt.bench.measure import BackendPlan, BenchResult, BenchSubnet, bench_input, plan_backend, run_bench, speedups

__all__ = [
    "BackendPlan",
    "BenchResult",
    "BenchSubnet",
    "DeviceCheck",
    "bench_input",
    "clocks_locked",
    "cuda_devices",
    "list_device_profiles",
    "load_device_profile",
    "parse_device_profile",
    "plan_backend",
    "run_bench",
    "run_device_checks",
    "speedups",
]
