"""Backend conformance: every registered backend on every device it supports, against a numpy reference.

Backends or devices missing here skip with the backend's own one-sentence reason (what to install).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from slimrt.backends import available_backends, backend_info, backend_names, create_runner
from slimrt.backends.base import Runner
from slimrt.errors import BackendUnavailableError, ConfigError


def _cases() -> list:
    out = []
    for name in backend_names():
        for dev in ("cpu", "cuda"):
            if dev not in backend_info(name).devices:
                continue
            marks = [pytest.mark.gpu] if dev == "cuda" else []
            if name == "tensorrt":
                marks.append(pytest.mark.tensorrt)
            out.append(pytest.param(name, dev, marks=marks, id=f"{name}-{dev}"))
    return out


def _tensorrt_engine(onnx_path: Path, out: Path) -> Path:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(onnx_path)), [parser.get_error(i) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 16, 16), (2, 3, 16, 16), (8, 3, 16, 16))
    config.add_optimization_profile(profile)
    out.write_bytes(bytes(builder.build_serialized_network(network, config)))
    return out


@pytest.mark.parametrize(("backend", "device"), _cases())
def test_backend_conformance(backend: str, device: str, synthetic_artifact: Path, tmp_path: Path, synth) -> None:
    reason = available_backends(device)[backend]
    if reason is not None:
        pytest.skip(reason)
    onnx_path = synthetic_artifact / "subnets" / "w24.onnx"
    kind = backend_info(backend).model_kind
    model = {"onnx": lambda: onnx_path,
             "torch_program": lambda: synth.export_torch_program(onnx_path, tmp_path / "w24.pt2"),
             "engine": lambda: _tensorrt_engine(onnx_path, tmp_path / "w24.plan")}[kind]()
    atol = 1e-4 if device == "cpu" else 2e-3  # TF32 / reduced-precision kernels on GPUs
    runner = create_runner(backend, model, device=device, threads=1, input_name="input", output_name="logits",
                           onnx_path=onnx_path)
    assert isinstance(runner, Runner) and runner.name == backend and runner.loaded
    assert runner.providers and runner.load() is runner  # load is idempotent
    xs = [np.random.default_rng(b).standard_normal((b, 3, 16, 16)).astype(np.float32) for b in (1, 3, 2)]
    for x in xs:
        y = runner.infer(x)
        assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (x.shape[0], 10)
        np.testing.assert_allclose(y, synth.reference_forward(onnx_path, x), atol=atol, rtol=1e-4)
    # Thread-safe: concurrent calls give each caller its own, correct result.
    expected = [runner.infer(x) for x in xs]
    results: dict[tuple[int, int], np.ndarray] = {}

    def call(t: int) -> None:
        for r in range(10):
            results[(t, r)] = runner.infer(xs[(t + r) % 3])

    threads = [threading.Thread(target=call, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (t, r), y in results.items():
        np.testing.assert_allclose(y, expected[(t + r) % 3], atol=atol)
    runner.close()
    runner.close()
    assert not runner.loaded
    with pytest.raises(RuntimeError, match="not loaded"):
        runner.infer(xs[0])


def test_unavailable_backend_says_what_to_install() -> None:
    reasons = available_backends("cuda")
    assert set(reasons) == set(backend_names()) >= {"onnxruntime", "tensorrt", "torch"}
    for name, reason in reasons.items():
        if reason is None:
            continue
        assert reason.endswith(".") and ("install" in reason or "GPU" in reason), (name, reason)
        with pytest.raises(BackendUnavailableError, match="install|GPU"):
            create_runner(name, "unused.onnx", device="cuda")


def test_registry_rejects_unknown_names() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'tvm'"):
        create_runner("tvm", "m.onnx")
    with pytest.raises(ConfigError, match="unknown device"):
        available_backends("tpu")
