"""TensorRT engines per sub-net (TensorRT 10 Python API), built on the device that will run them.

* one engine per sub-net from its ONNX model (``OnnxParser.parse_from_file`` resolves the shared
  ``weights.bin`` beside it), fp32 or fp16 (``BuilderFlag.FP16``);
* one timing cache shared by every build (similar sub-nets reuse tactic timings) and saved beside the
  engines, so a later ``--engines-only`` run on the same device starts warm;
* where the installed TensorRT supports it (10.0+: ``BuilderFlag.STRIP_PLAN``), weight-stripped plans
  built with ``REFIT_IDENTICAL`` (plain ``REFIT`` is documented to give wrong results in TensorRT
  11.3) and refitted at load from the sub-net's ONNX (``OnnxParserRefitter``), so the artifact keeps
  its weights once, in ``weights.bin``.

Engines are not portable across GPUs or TensorRT versions: they live in ``engines/<device-tag>/``.
TensorRT is imported lazily; without it every entry point raises :class:`BackendUnavailableError`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slimrt.errors import BackendUnavailableError, ExportError

__all__ = [
    "TENSORRT_MISSING",
    "EngineBuildOptions",
    "require_tensorrt",
    "device_tag",
    "build_engine",
    "load_engine",
]

log = logging.getLogger(__name__)

TENSORRT_MISSING = "TensorRT is not installed: pip install 'slimrt[tensorrt]' on a machine with an NVIDIA GPU"
NO_GPU = "TensorRT needs an NVIDIA GPU, and none is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)"


class EngineBuildOptions(BaseModel):
    """Knobs of one engine build."""

    fp16: bool = False
    strip_weights: bool = True
    workspace_mb: int = 1024
    max_batch: int = 32


def require_tensorrt() -> Any:
    """Import and return the ``tensorrt`` module, or raise BackendUnavailableError with one clear sentence."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError:
        raise BackendUnavailableError(TENSORRT_MISSING) from None
    if not _gpu_name():
        raise BackendUnavailableError(NO_GPU)
    return trt


def _gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except ImportError:  # pragma: no cover - torch is present wherever export runs
        pass
    return None


def _compute_capability() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    return f"sm{major}{minor}"


def device_tag(trt: Any) -> tuple[str, str]:
    """``(tag, gpu_name)``: e.g. ``("nvidia-h100-80gb-hbm3-sm90-trt10.3.0", "NVIDIA H100 80GB HBM3")``."""
    name = _gpu_name() or "unknown-gpu"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{slug}-{_compute_capability()}-trt{trt.__version__}", name


def _supports_stripping(trt: Any) -> bool:
    flags = trt.BuilderFlag
    return hasattr(flags, "STRIP_PLAN") and hasattr(flags, "REFIT_IDENTICAL") and hasattr(trt, "OnnxParserRefitter")


def build_engine(
    trt: Any,
    onnx_path: Path,
    engine_path: Path,
    timing_cache: Any | None,
    options: EngineBuildOptions,
    *,
    logger: Any | None = None,
) -> tuple[Any, bool]:
    """Build one serialized engine from an ONNX file.

    Args:
        trt: the tensorrt module (from :func:`require_tensorrt`).
        onnx_path: the sub-net's ONNX model.
        engine_path: where to write the plan (caller renames it into place).
        timing_cache: an ``ITimingCache`` shared across builds, or None to create one.
        options: precision, stripping, workspace, max batch for a symbolic batch dimension.
        logger: a ``trt.ILogger``; a warning-level logger by default.

    Returns:
        ``(timing_cache, weight_stripped)``.
    """
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if options.fp16:
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast fp16; building %s in fp16 anyway", onnx_path.name)
        config.set_flag(trt.BuilderFlag.FP16)
    stripped = options.strip_weights and _supports_stripping(trt)
    if stripped:
        config.set_flag(trt.BuilderFlag.STRIP_PLAN)
        config.set_flag(trt.BuilderFlag.REFIT_IDENTICAL)
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    if any(d < 0 for d in shape):
        profile = builder.create_optimization_profile()
        rest = shape[1:]
        profile.set_shape(inp.name, (1, *rest), (1, *rest), (options.max_batch, *rest))
        config.add_optimization_profile(profile)
    if timing_cache is None:
        timing_cache = config.create_timing_cache(b"")
    config.set_timing_cache(timing_cache, False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT failed to build an engine for {onnx_path.name} (see the TensorRT log above)")
    engine_path.write_bytes(bytes(plan))
    return timing_cache, stripped


def load_engine(trt: Any, engine_path: Path, onnx_path: Path, weight_stripped: bool, logger: Any | None = None) -> Any:
    """Deserialize an engine; refit a weight-stripped one from the sub-net's ONNX (and so from ``weights.bin``)."""
    logger = logger or trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise ExportError(f"{engine_path}: TensorRT could not deserialize the engine (built for another GPU/version?)")
    if weight_stripped:
        refitter = trt.Refitter(engine, logger)
        parser_refitter = trt.OnnxParserRefitter(refitter, logger)
        if not parser_refitter.refit_from_file(str(onnx_path)) or not refitter.refit_cuda_engine():
            raise ExportError(f"{engine_path}: refitting the weight-stripped engine from {onnx_path.name} failed")
    return engine


def serialize_cache(cache: Any) -> bytes:
    """Bytes of an ``ITimingCache``."""
    return bytes(cache.serialize())


def load_cache(trt: Any, data: bytes) -> Any:
    """An ``ITimingCache`` from serialized bytes (an empty cache for ``b""``)."""
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    return builder.create_builder_config().create_timing_cache(data)


ProgressFn = Callable[[str], None]
