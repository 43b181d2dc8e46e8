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
