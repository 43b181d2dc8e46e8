"""Export validation opens sub-nets through the Runner interface (real ONNX Runtime on synthetic artifacts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slimrt.exporters.validate import onnx_runner, run_batched
from slimrt.testing import reference_forward


def test_validation_runner_follows_the_models_batch(tmp_path: Path, build_artifact) -> None:
    fixed = build_artifact(tmp_path / "fixed.slim", widths=(16, 8), dynamic_batch=False, batch=2)
    dynamic = build_artifact(tmp_path / "dyn.slim", widths=(16, 8))
    x = np.random.default_rng(0).standard_normal((6, 3, 16, 16)).astype(np.float32)
    for root in (fixed, dynamic):
        path = root / "subnets" / "w8.onnx"
        with onnx_runner(path, threads=1) as runner:
            assert runner.providers == ["CPUExecutionProvider"]
            np.testing.assert_allclose(run_batched(runner, x, chunk=4), reference_forward(path, x), atol=1e-4)
    with onnx_runner(fixed / "subnets" / "w8.onnx") as runner, pytest.raises(ValueError, match="fixed batch size 2"):
        run_batched(runner, x[:5])
