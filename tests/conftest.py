"""Shared fixtures. ``synthetic_artifact`` is a real tiny artifact (ONNX written with onnx.helper, no torch)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

import slimrt.testing

_TORCH_PROGRAMS = Path(__file__).parent / "runtime" / "torch_programs.py"


def _load_torch_programs():
    mod = sys.modules.get("slimrt_tests_torch_programs")
    if mod is None:
        spec = importlib.util.spec_from_file_location("slimrt_tests_torch_programs", _TORCH_PROGRAMS)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def synth() -> SimpleNamespace:
    """:mod:`slimrt.testing` (builder, numpy reference forward) plus tests/runtime/torch_programs.py (needs torch)."""
    tp = _load_torch_programs()
    names = {n: getattr(slimrt.testing, n) for n in slimrt.testing.__all__}
    return SimpleNamespace(**names, **{n: getattr(tp, n) for n in tp.__all__})


@pytest.fixture(scope="session")
def build_artifact() -> Callable[..., Path]:
    """Factory: ``build_artifact(root, **kwargs)``, i.e. :func:`slimrt.testing.build_synthetic_artifact`."""
    return slimrt.testing.build_synthetic_artifact


@pytest.fixture(scope="session")
def _pristine_artifact(tmp_path_factory: pytest.TempPathFactory, build_artifact) -> Path:
    return build_artifact(tmp_path_factory.mktemp("pristine") / "synthetic.slim")


@pytest.fixture()
def synthetic_artifact(tmp_path: Path, _pristine_artifact: Path) -> Path:
    """A fresh copy (safe to tamper with) of a 3-sub-net artifact: w64, w24, w8; input [batch, 3, 16, 16]."""
    dst = tmp_path / "synthetic.slim"
    shutil.copytree(_pristine_artifact, dst)
    return dst


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run torch on one intra-op thread for a module: on a shared 2-core machine tiny nets are faster that way."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _export_and_serve(net, specs, root: Path, *, arch: str, arch_kwargs: dict, seed: int = 0):
    """Checkpoint ``net`` with ``specs``, export it (ONNX validated against PyTorch, random inputs) and serve one
    input with SlimRuntime; return ``(ExportResult, served sub-net name, served output, PyTorch output)``."""
    import numpy as np
    import torch

    from slimrt import SlimRuntime
    from slimrt.exporters import ExportOptions, export_artifact
    from slimrt.train.checkpoint import load_checkpoint, save_checkpoint

    c = net.input_shape[0]
    path = save_checkpoint(root / "model.pt", net=net, arch=arch, arch_kwargs=arch_kwargs, subnets=specs,
                           input_shape=net.input_shape, mean=[0.0] * c, std=[1.0] * c, dataset="synthetic", config={})
    ckpt = load_checkpoint(path, arch_override=arch if ":" in arch else None)
    result = export_artifact(ckpt, root / "net.slim", ExportOptions(validation_samples=0, random_samples=2))
    x = np.random.default_rng(seed).standard_normal((1, *net.input_shape)).astype(np.float32)
    with SlimRuntime(root / "net.slim", budget_ms=1e5, threads=1, measure_runs=2, measure_seconds=0.5) as rt:
        assert len(rt.subnets) == len(specs)
        name, y = rt.active.name, rt(x)
    spec = next(s for s in specs if s.name == name)
    with torch.no_grad(), net.use(spec):
        ref = net(torch.from_numpy(x)).numpy()
    return result, name, y, ref


@pytest.fixture(scope="session")
def export_and_serve() -> Callable[..., tuple]:
    """Factory: ``export_and_serve(net, specs, root, arch=..., arch_kwargs=...)`` (see :func:`_export_and_serve`)."""
    return _export_and_serve
