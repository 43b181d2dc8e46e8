"""Validation of an exported sub-net against its PyTorch original (as Optimum does it).

The ONNX model runs in ONNX Runtime on CPU, through the :class:`~slimrt.backends.Runner` interface the runtime
uses, on real inputs from the dataset and on random inputs; the PyTorch reference is the dynamic network in eval
mode under ``net.use(spec)``. The reported error is the maximum absolute difference over every output element of
every input.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

if TYPE_CHECKING:
    import torch

    from slimrt.backends import Runner

__all__ = [
    "SubnetValidation",
    "make_validation_inputs",
    "validate_subnet",
    "onnx_runner",
    "run_batched",
]

log = logging.getLogger(__name__)


class SubnetValidation(BaseModel):
    """Validation result of one sub-net."""

    name: str
    max_abs_diff: float
    max_abs_diff_real: float | None = None
    max_abs_diff_random: float
    atol: float
    ok: bool
    argmax_agreement: float | None = None


def make_validation_inputs(
    input_shape: tuple[int, ...],
    real: np.ndarray | None,
    n_random: int,
    seed: int = 0,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Real inputs as float32 (or None) and ``n_random`` standard-normal inputs of shape [n, *input_shape]."""
    rng = np.random.default_rng(seed)
    rand = rng.standard_normal((max(n_random, 1), *input_shape)).astype(np.float32)
    real_arr = None if real is None or len(real) == 0 else np.ascontiguousarray(real, dtype=np.float32)
    return real_arr, rand


def onnx_runner(path: str | Path, threads: int | None = None) -> Runner:
    """A loaded CPU ONNX Runtime :class:`~slimrt.backends.Runner` of a model file (external data resolved beside it).

    Input and output are the model's first ones, read from the file, so any exported sub-net can be opened.
    """
    import onnx

    from slimrt.backends import RunnerOptions, create_runner

    graph = onnx.load(str(path), load_external_data=False).graph
    return create_runner("onnxruntime", path, RunnerOptions(device="cpu", threads=threads,
                                                            input_name=graph.input[0].name,
                                                            output_name=graph.output[0].name))


def _fixed_batch(path: str | Path) -> int | None:
    import onnx

    dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def run_batched(runner: Runner, x: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Run ``runner`` over ``x`` in chunks, one model batch at a time when the model's batch dimension is fixed."""
    fixed = _fixed_batch(runner.model_path)
    step = fixed if fixed is not None else chunk
    outs = []
    for i in range(0, len(x), step):
        xb = x[i : i + step]
        if fixed is not None and len(xb) != fixed:
            raise ValueError(f"{len(x)} inputs do not split into batches of the model's fixed batch size {fixed}")
        outs.append(runner.infer(xb))
    return np.concatenate(outs, axis=0)


def _torch_out(fn, x: np.ndarray, chunk: int = 256) -> np.ndarray:
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            outs.append(fn(torch.from_numpy(x[i : i + chunk])).detach().cpu().float().numpy())
    return np.concatenate(outs, axis=0)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if not np.all(np.isfinite(d)):
        return math.inf
    return float(d.max()) if d.size else 0.0


def validate_subnet(
    name: str,
    onnx_path: str | Path,
    reference: torch.nn.Module,
    real: np.ndarray | None,
    random: np.ndarray,
    atol: float,
) -> SubnetValidation:
    """Compare ONNX Runtime against ``reference`` (a module in eval mode computing the same sub-net).

    Args:
        name: sub-net name (for the report).
        onnx_path: the exported model (inside the artifact being built).
        reference: PyTorch callable of the sub-net (e.g. the DynamicNet under ``use(spec)``).
        real: real dataset inputs [N, C, H, W] or None.
        random: random inputs [M, C, H, W].
        atol: tolerance on the max absolute difference.
    """
    diff_real = None
    agree = None
    with onnx_runner(onnx_path, threads=1) as runner:  # results do not depend on threads; one avoids oversubscription
        if real is not None:
            a, b = run_batched(runner, real), _torch_out(reference, real)
            diff_real = _max_diff(a, b)
            if a.shape == b.shape and a.ndim == 2:
                agree = float(np.mean(a.argmax(1) == b.argmax(1)))
        diff_rand = _max_diff(run_batched(runner, random), _torch_out(reference, random))
    worst = max(diff_rand, diff_real if diff_real is not None else 0.0)
    return SubnetValidation(
        name=name,
        max_abs_diff=worst,
        max_abs_diff_real=diff_real,
        max_abs_diff_random=diff_rand,
        atol=atol,
        ok=worst <= atol,
        argmax_agreement=agree,
    )
