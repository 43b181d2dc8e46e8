"""Latency measurement (shared with bench), device fingerprint, and backend resolution."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from slimrt import SlimRuntime
from slimrt.artifact import load_manifest
from slimrt.backends import create_runner
from slimrt.errors import ArtifactError, BackendUnavailableError
from slimrt.fingerprint import device_fingerprint
from slimrt.runtime import measure_latency, resolve_backend, summarize


def test_measure_real_runners_round_robin(synthetic_artifact: Path) -> None:
    m = load_manifest(synthetic_artifact)
    runners = {s.name: create_runner("onnxruntime", synthetic_artifact / s.onnx.path, threads=1) for s in m.subnets}
    x = np.zeros((1, 3, 16, 16), np.float32)
    lat = measure_latency(runners, x, warmup=2, runs=25)
    assert list(lat) == ["w64", "w24", "w8"]
    for s in lat.values():
        assert s.runs == 25 and 0 < s.p50_ms <= s.p90_ms <= s.p95_ms <= s.p99_ms and s.cv >= 0


def test_measure_interleaves_and_rotates() -> None:
    order: list[str] = []

    def fn(name: str):
        return lambda x: order.append(name)

    measure_latency({"a": fn("a"), "b": fn("b"), "c": fn("c")}, np.zeros(1), warmup=1, runs=3)
    timed = order[3:]
    assert timed == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_measure_in_blocks_times_the_steady_calls_not_the_switch(monkeypatch) -> None:
    """``block`` > 1: each runner runs ``block`` times in a row and the first call, the switch, is not timed. A
    virtual clock: a runner costs 5 ms on the call after another runner's and 1 ms on a repeated call."""
    import slimrt.runtime.measure as measure

    now = [0]
    order: list[str] = []

    class Clock:
        @staticmethod
        def perf_counter_ns() -> int:
            return now[0]

    def fn(name: str):
        def call(x):
            now[0] += 1_000_000 if order and order[-1] == name else 5_000_000
            order.append(name)

        return call

    monkeypatch.setattr(measure, "time", Clock)
    runners = {"a": fn("a"), "b": fn("b")}
    cold = measure_latency(runners, np.zeros(1), warmup=0, runs=4)
    assert cold["a"].runs == 4 and cold["a"].p50_ms == pytest.approx(5.0)  # every call follows the other runner
    order.clear()
    warm = measure_latency(runners, np.zeros(1), warmup=0, runs=4, block=3)
    assert order[:6] == ["a"] * 3 + ["b"] * 3 and len(order) == 4 * 2 * 3
    assert warm["a"].runs == 4 * 2 and warm["a"].p50_ms == pytest.approx(1.0) and warm["b"].p99_ms == pytest.approx(1.0)
    with pytest.raises(ValueError, match="block must be >= 1"):
        measure_latency(runners, np.zeros(1), block=0)


def test_measure_stops_at_duration_after_min_runs() -> None:
    def slow(_x: np.ndarray) -> None:
        time.sleep(0.005)

    lat = measure_latency({"a": slow, "b": slow}, np.zeros(1), warmup=0, runs=1000, duration_s=0.02, min_runs=3)
    assert lat["a"].runs == 3 and lat["b"].runs == 3


def test_summarize_quantiles() -> None:
    s = summarize("x", np.arange(1, 101, dtype=float))
    assert s.p50_ms == pytest.approx(50.5) and s.p99_ms == pytest.approx(99.01) and s.mean_ms == 50.5
    with pytest.raises(ValueError):
        summarize("x", [])
    with pytest.raises(ValueError):
        measure_latency({}, np.zeros(1))


def test_fingerprint_is_stable_and_backend_specific() -> None:
    a = device_fingerprint("onnxruntime", ["CPUExecutionProvider"], 2, "fp32", 1)
    assert a.id() == device_fingerprint("onnxruntime", ["CPUExecutionProvider"], 2, "fp32", 1).id()
    assert len(a.id()) == 16 and a.cpu_cores >= 1 and a.cpu_model
    assert a.onnxruntime and a.torch is None and a.tensorrt is None  # only the backend's own version
    assert a.gpu_name is None  # a CPU backend does not depend on the GPU driver
    ids = {a.id(), device_fingerprint("onnxruntime", ["CPUExecutionProvider"], 1, "fp32", 1).id(),
           device_fingerprint("onnxruntime", ["CPUExecutionProvider"], 2, "fp32", 8).id(),
           device_fingerprint("torch", ["cpu"], 2, "fp32", 1).id()}
    assert len(ids) == 4


def test_resolve_backend(synthetic_artifact: Path) -> None:
    m = load_manifest(synthetic_artifact)
    assert resolve_backend(m, "cpu") == "onnxruntime"
    with pytest.raises(ArtifactError, match="no torch.export programs; re-export it with `slimrt export --torch`"):
        resolve_backend(m, "cpu", "torch")
    with pytest.raises(BackendUnavailableError, match="install"):
        resolve_backend(m, "cuda", "tensorrt")


def test_torch_backend_serves_torch_programs(tmp_path: Path, build_artifact, synth) -> None:
    pytest.importorskip("torch", reason="torch is not installed")
    root = synth.add_torch_programs(build_artifact(tmp_path / "t.slim", widths=(16, 8)))
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with SlimRuntime(root, budget_ms=1e3, backend="torch", threads=1, measure_runs=10) as rt:
        assert rt.backend == "torch" and rt.active.name == "w16"
        np.testing.assert_allclose(rt(x), synth.reference_forward(root / "subnets/w16.onnx", x), atol=1e-4)
        assert rt.fingerprint.torch and rt.fingerprint.onnxruntime is None
