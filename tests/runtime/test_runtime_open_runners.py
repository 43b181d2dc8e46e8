"""backends.open_runners: the one place that resolves the backend and loads every sub-net (real ONNX Runtime)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from slimrt import SlimRuntime
from slimrt.artifact import verify_artifact
from slimrt.backends import backend_info, open_runners, resolve_backend
from slimrt.bench import load_device_profile, run_bench
from slimrt.errors import ArtifactError, BackendUnavailableError, ConfigError
from slimrt.testing import reference_forward


def test_opens_every_subnet_in_manifest_order_and_closes_them(synthetic_artifact: Path) -> None:
    manifest = verify_artifact(synthetic_artifact)
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with open_runners(synthetic_artifact, manifest, "cpu", threads=1) as opened:
        assert (opened.backend, opened.device, opened.model_kind, opened.precision) == ("onnxruntime", "cpu", "onnx",
                                                                                       "fp32")
        assert list(opened.runners) == [s.name for s in manifest.subnets] == ["w64", "w24", "w8"]
        assert opened.providers == ["CPUExecutionProvider"] and opened.engines is None
        for s in manifest.subnets:
            runner = opened.runners[s.name]
            assert runner.loaded and runner.options.threads == 1 and runner.options.output_name == "logits"
            ref = reference_forward(synthetic_artifact / s.onnx.path, x)
            np.testing.assert_allclose(runner.infer(x), ref, atol=1e-4)
        kept = list(opened.runners.values())
    assert not any(r.loaded for r in kept)


def test_backend_switches_reach_every_runner(synthetic_artifact: Path) -> None:
    manifest = verify_artifact(synthetic_artifact)
    with open_runners(synthetic_artifact, manifest, extra={"threading": "spin"}) as opened:
        assert {r.threading for r in opened.runners.values()} == {"spin"}  # type: ignore[attr-defined]


def test_unusable_backends_say_why(synthetic_artifact: Path) -> None:
    manifest = verify_artifact(synthetic_artifact)
    with pytest.raises(ConfigError, match="unknown device"):
        open_runners(synthetic_artifact, manifest, "gpu")
    with pytest.raises(BackendUnavailableError, match="NVIDIA GPUs only"):
        open_runners(synthetic_artifact, manifest, "cpu", "tensorrt")
    # torch here: the artifact has no torch.export programs; no torch: the probe says what to install
    expected = BackendUnavailableError if backend_info("torch").probe("cpu") else ArtifactError
    with pytest.raises(expected, match="torch"):
        open_runners(synthetic_artifact, manifest, "cpu", "torch")
    assert resolve_backend(manifest, "cpu") == "onnxruntime"


def test_bench_and_runtime_open_the_same_runners(synthetic_artifact: Path) -> None:
    """The stored profile matches the runtime's fingerprint only if both opened the same backend the same way."""
    prof = load_device_profile("cpu").model_copy(update={"warmup": 1, "threads": 1})
    res = run_bench(synthetic_artifact, prof, runs=5, progress=False)
    with SlimRuntime(synthetic_artifact, threads=1, measure_if_missing=False) as rt:
        assert rt.latency_source == "stored" and rt.fingerprint.id() == res.fingerprint_id
        assert rt.runner("w8").providers == res.providers and rt.precision == res.fingerprint.precision
        assert rt.latency_profile.latency("w8") == res.latency_profile.latency("w8")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert rt.profile is rt.latency_profile  # deprecated alias
        assert any(issubclass(w.category, DeprecationWarning) for w in caught)
