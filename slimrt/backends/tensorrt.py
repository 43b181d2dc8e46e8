"""Native TensorRT backend: runs the artifact's serialized engines (``engines/<device-tag>/<name>.plan``).

Written against the documented TensorRT 10 Python API (``Runtime.deserialize_cuda_engine``, named I/O tensors,
``set_input_shape``/``set_tensor_address``/``execute_async_v3``); weight-stripped plans are refitted at load from
the sub-net's ONNX model with ``OnnxParserRefitter``. Device memory comes from cuda-python (``cuda.bindings``)
or, when that is missing, torch. Nothing here is imported before :meth:`TensorRTRunner.load`.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from slimrt.backends.base import BackendInfo, Runner, RunnerOptions, register_backend
from slimrt.errors import ArtifactError, BackendUnavailableError

__all__ = ["TensorRTRunner", "probe"]

log = logging.getLogger(__name__)

_NOT_INSTALLED = "TensorRT is not installed (pip install 'slimrt[tensorrt]' on a machine with an NVIDIA GPU)."


def _has(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


def probe(device: str) -> str | None:
    """None when TensorRT engines can run on ``device`` here, else what to install."""
    if device == "cpu":
        return "TensorRT runs on NVIDIA GPUs only; use device='cuda' or 'jetson', or the onnxruntime backend on CPU."
    if not _has("tensorrt"):
        return _NOT_INSTALLED
    if not (_has("cuda.bindings") or _has("cuda.cudart") or _has("torch")):
        return "TensorRT needs CUDA device memory: install cuda-python (pip install cuda-python)."
    return None


class _CudaMem:
    """Minimal device-memory helper over cuda-python (preferred) or torch."""

    def __init__(self) -> None:
        self.cudart: Any = None
        self.torch: Any = None
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            try:
                from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
            except ImportError:
                cudart = None
        if cudart is not None:
            self.cudart = cudart
            self.stream = self._check(cudart.cudaStreamCreate())
            self.handle = int(self.stream)
        else:
            import torch

            if not torch.cuda.is_available():
                raise BackendUnavailableError("TensorRT needs a CUDA GPU, and torch sees none here.")
            self.torch = torch
            self._tstream = torch.cuda.Stream()
            self.stream = self.handle = self._tstream.cuda_stream

    def _check(self, ret: Any) -> Any:
        err, *rest = ret if isinstance(ret, tuple) else (ret,)
        if int(err) != 0:
            raise BackendUnavailableError(f"CUDA call failed with error {err}")
        return rest[0] if len(rest) == 1 else rest

    def alloc(self, nbytes: int) -> tuple[int, Any]:
        """(device pointer, owner) of ``nbytes`` bytes."""
        if self.cudart is not None:
            ptr = self._check(self.cudart.cudaMalloc(max(nbytes, 1)))
            return int(ptr), ptr
        t = self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8, device="cuda")
        return int(t.data_ptr()), t

    def free(self, owner: Any) -> None:
        if self.cudart is not None:
            self.cudart.cudaFree(owner)

    def h2d(self, ptr: int, owner: Any, host: np.ndarray) -> None:
        if self.cudart is not None:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(self.cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self.stream))
        else:
            src = self.torch.from_numpy(host.reshape(-1).view(np.uint8))
            with self.torch.cuda.stream(self._tstream):
                owner[: host.nbytes].copy_(src)

    def d2h(self, host: np.ndarray, ptr: int, owner: Any) -> None:
        if self.cudart is not None:
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(self.cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self.stream))
        else:
            dst = self.torch.from_numpy(host.reshape(-1).view(np.uint8))
            with self.torch.cuda.stream(self._tstream):
                dst.copy_(owner[: host.nbytes])

    def sync(self) -> None:
        if self.cudart is not None:
            self._check(self.cudart.cudaStreamSynchronize(self.stream))
        else:
            self._tstream.synchronize()


class TensorRTRunner(Runner):
    """One deserialized TensorRT engine + execution context; ``infer`` is serialized by a lock (contexts are not
    thread-safe)."""

    name = "tensorrt"

    def __init__(self, model_path: str | Path, options: RunnerOptions | None = None) -> None:
        super().__init__(model_path, options)
        self._lock = threading.Lock()
        self._bufs: dict[str, tuple[int, int, Any]] = {}  # name -> (capacity bytes, ptr, owner)
        self.context: Any = None

    @property
    def providers(self) -> list[str]:
        return ["tensorrt"]

    def _load_impl(self) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendUnavailableError(_NOT_INSTALLED) from None
        self.trt = trt
        self.mem = _CudaMem()
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        engine = self.runtime.deserialize_cuda_engine(self.model_path.read_bytes())
        if engine is None:
            raise ArtifactError(
                f"{self.model_path.name}: TensorRT could not deserialize the engine (built with another TensorRT "
                "version or GPU? rebuild it with `slimrt export --engines-only --tensorrt`)"
            )
        if self.options.extra.get("weight_stripped"):
            onnx_path = self.options.onnx_path
            if onnx_path is None:
                raise ArtifactError(f"{self.model_path.name}: weight-stripped engine needs its ONNX model to refit")
            refitter = trt.Refitter(engine, logger)
            parser = trt.OnnxParserRefitter(refitter, logger)
            if not parser.refit_from_file(str(onnx_path)) or not refitter.refit_cuda_engine():
                raise ArtifactError(f"{self.model_path.name}: refitting from {onnx_path.name} failed")
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.in_name = self.options.input_name if self.options.input_name in self.inputs else self.inputs[0]
        self.out_name = self.options.output_name or self.outputs[0]
        self.out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.out_name)))
        self.in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.in_name)))

    def _buffer(self, name: str, nbytes: int) -> tuple[int, Any]:
        cap, ptr, owner = self._bufs.get(name, (0, 0, None))
        if nbytes > cap:
            if owner is not None:
                self.mem.free(owner)
            ptr, owner = self.mem.alloc(nbytes)
            self._bufs[name] = (nbytes, ptr, owner)
            self.context.set_tensor_address(name, ptr)
        return ptr, owner

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.in_dtype)
        with self._lock:
            ctx = self.context
            if ctx is None:
                raise RuntimeError(f"{self!r} is not loaded; call load() first")
            ctx.set_input_shape(self.in_name, x.shape)
            self.mem.h2d(*self._buffer(self.in_name, x.nbytes), x)
            out = np.empty(tuple(ctx.get_tensor_shape(self.out_name)), dtype=self.out_dtype)
            out_ptr, out_owner = self._buffer(self.out_name, out.nbytes)
            for other in self.outputs:
                if other != self.out_name:
                    item = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(other))).itemsize
                    self._buffer(other, int(np.prod(tuple(ctx.get_tensor_shape(other)))) * item)
            if not ctx.execute_async_v3(self.mem.handle):
                raise RuntimeError(f"{self.model_path.name}: TensorRT execution failed")
            self.mem.d2h(out, out_ptr, out_owner)
            self.mem.sync()
        return out

    def _close_impl(self) -> None:
        for _, _, owner in self._bufs.values():
            self.mem.free(owner)
        self._bufs.clear()
        self.context = None
        self.engine = None


register_backend(
    BackendInfo(name="tensorrt", factory=TensorRTRunner, probe=probe, model_kind="engine", devices=("cuda", "jetson"))
)
