"""torch backend: runs the artifact's ``torch.export`` programs (``torch/<name>.pt2``) on CPU or a CUDA GPU.

For GPUs where ONNX Runtime GPU is missing but torch is present. torch is imported inside the runner only.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from slimrt.backends.base import BackendInfo, Runner, RunnerOptions, register_backend
from slimrt.errors import ArtifactError, BackendUnavailableError

__all__ = ["TorchRunner", "probe"]

log = logging.getLogger(__name__)


def probe(device: str) -> str | None:
    """None when torch can run exported programs on ``device`` here, else what to install."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install 'slimrt[train]'; a CUDA build of torch for GPUs)."
    if device == "cpu":
        return None
    import torch

    if not torch.cuda.is_available():
        return "torch here has no CUDA device; install a CUDA build of torch (https://pytorch.org/get-started)."
    return None


class TorchRunner(Runner):
    """A ``torch.export`` program loaded with ``torch.export.load`` and run under ``torch.inference_mode``."""

    name = "torch"

    def __init__(self, model_path: str | Path, options: RunnerOptions | None = None) -> None:
        super().__init__(model_path, options)
        self.module: Any = None

    @property
    def providers(self) -> list[str]:
        return ["cuda" if self.options.device != "cpu" else "cpu"]

    def _load_impl(self) -> None:
        try:
            import torch
        except ImportError:
            raise BackendUnavailableError(probe("cpu") or "torch is not installed") from None
        dev = torch.device("cuda" if self.options.device != "cpu" else "cpu")
        if self.options.threads is not None and dev.type == "cpu":
            torch.set_num_threads(self.options.threads)  # process-wide, as torch offers no per-module setting
        try:
            program = torch.export.load(str(self.model_path))
        except Exception as e:
            raise ArtifactError(f"{self.model_path.name}: not a loadable torch.export program ({e})") from None
        module = program.module()
        self.module = module.to(dev) if dev.type != "cpu" else module
        self.torch = torch
        self.dev = dev

    def infer(self, x: np.ndarray) -> np.ndarray:
        module = self.module
        if module is None:
            raise RuntimeError(f"{self!r} is not loaded; call load() first")
        torch = self.torch
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x))
            if self.dev.type != "cpu":
                t = t.to(self.dev, non_blocking=True)
            y = module(t)
            if isinstance(y, (tuple, list)):
                y = y[0]
            return y.detach().to("cpu").numpy()

    def _close_impl(self) -> None:
        self.module = None


register_backend(BackendInfo(name="torch", factory=TorchRunner, probe=probe, model_kind="torch_program"))
