"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers.

Threading (measured by ``benchmarks/runtime.py``, section ``threading``): with ONNX Runtime's default
per-session thread pools, each session's intra-op workers spin for a while after every run; with one session
per sub-net in one process, calls that alternate between sessions fight the idle sessions' spinning workers for
the cores, and ran 1.5-2x slower than repeated calls on one session (2 cores, ONNX Runtime 1.32). Three designs
remove that penalty:

* ``"nospin"`` (the default): per-session pools with ``session.intra_op.allow_spinning=0``. Local to our
  sessions, so nothing else in the process changes; but every parallel section of every op then wakes its workers
  through the OS: 1.14x a default session's p50 at batch 1 in long runs on a quiet 2-vCPU machine, 1.01x at batch
  32 (issue 15, ``benchmarks/results/runtime-issue15-steady.json``).
* ``"spinstop"``: per-session pools that spin *during* a run (ONNX Runtime's default) with
  ``session.force_spinning_stop=1``: the steady-state speed of spinning, nearly, without idle sessions spinning
  after their run. Measured (issue 15): on a loaded machine calls alternating between sessions ran 2.5-10x slower
  than steady (a spinning thread burns the slice a busy process needs and waits for a preempted worker); on a quiet
  one 1.02-1.07x a default session, alternating or not. So not a threading mode of its own by default, but the
  *clear session* (:meth:`OnnxRuntimeRunner.clear_infer`) that ``SlimRuntime(clear_sessions=True)`` serves while
  every slowdown estimate says the device is quiet, going back to the nospin session under contention.
* Steady sessions (:meth:`OnnxRuntimeRunner.steady_infer`, used by ``SlimRuntime(steady_after=N)``, default 64):
  spinning is fixed when a session is created, so spinning for the active sub-net only takes a second, spinning
  (ONNX Runtime default) session of that sub-net, served once it has run N calls in a row (1.03x a default
  session at batch 1, issue 15); a switch goes back to the other sub-net's nospin session, so only the sub-net
  just left spins (~40 ms of CPU after its last run, measured here), slowing the next calls meanwhile.
* ``"global"``: one process-wide pool (``onnxruntime.set_global_thread_pool_sizes`` +
  ``use_per_session_threads=False``), spinning, shared by every sub-net, so switching costs no other pool's wake-up
  or spin. Fastest measured here: 1.03x a default session steady and 1.05x alternating every call at batch 1
  (``benchmarks/results/runtime-issue15-global.json``). But verified with 1.32: once the global pool exists,
  *every* later session of the process must also opt out of per-session threads, so an app's own plain
  ``InferenceSession(path)`` fails ("use_per_session_threads must be false when using a global thread pool"),
  and the thread count is fixed for the whole process (one thread count: no threads knob). Sessions opened before
  the pool keep working. Hence opt-in only: for a process where slimrt is the only ONNX Runtime user.

``"spin"`` keeps ONNX Runtime's defaults (for comparison).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slimrt.backends.base import BackendInfo, Runner, RunnerOptions, register_backend
from slimrt.errors import BackendUnavailableError, ConfigError

__all__ = ["OnnxRuntimeRunner", "ThreadingMode", "THREADING_MODES", "DEFAULT_THREADING", "providers_for", "probe",
           "session_options"]

log = logging.getLogger(__name__)

ThreadingMode = Literal["spinstop", "nospin", "global", "spin"]
THREADING_MODES: tuple[str, ...] = ("spinstop", "nospin", "global", "spin")
DEFAULT_THREADING: ThreadingMode = "nospin"

_GPU_HINT = "install onnxruntime-gpu (pip install 'slimrt[gpu]', replacing onnxruntime)"
_global_lock = threading.Lock()
_global_pool: tuple[int, int] | None = None
#: threading mode of each second session a "nospin" runner can open (:meth:`OnnxRuntimeRunner._variant_infer`)
_VARIANTS: dict[str, ThreadingMode] = {"steady": "spin", "clear": "spinstop"}


def probe(device: str) -> str | None:
    """None when ONNX Runtime can run on ``device`` here, else what to install."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install onnxruntime)."
    if device == "cpu":
        return None
    import onnxruntime as ort

    avail = set(ort.get_available_providers())
    if not avail & {"CUDAExecutionProvider", "TensorrtExecutionProvider"}:
        return f"ONNX Runtime here has no CUDA or TensorRT execution provider; {_GPU_HINT}."
    return None


def providers_for(device: str, precision: str = "fp32") -> list[Any]:
    """Execution providers (with options): cpu -> CPU; cuda/jetson -> TensorRT EP if present, else CUDA."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    avail = ort.get_available_providers()
    out: list[Any] = []
    if "TensorrtExecutionProvider" in avail:
        cache = Path.home() / ".cache" / "slimrt" / "ort-trt"
        out.append((
            "TensorrtExecutionProvider",
            {"trt_fp16_enable": precision == "fp16", "trt_engine_cache_enable": True,
             "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True},
        ))
    if "CUDAExecutionProvider" in avail:
        out.append("CUDAExecutionProvider")
    if not out:
        raise BackendUnavailableError(f"ONNX Runtime here has no CUDA or TensorRT execution provider; {_GPU_HINT}.")
    return [*out, "CPUExecutionProvider"]


def _ensure_global_pool(threads: int | None) -> None:
    """Create ONNX Runtime's process-wide thread pool once (before the first session of the process)."""
    global _global_pool
    want = (threads or 0, 1)
    with _global_lock:
        if _global_pool is None:
            import onnxruntime as ort

            ort.set_global_thread_pool_sizes(*want)
            _global_pool = want
            log.warning("ONNX Runtime global thread pool enabled: every later session of this process must set "
                        "use_per_session_threads=False")
        elif _global_pool != want:
            # a session asking for another size would silently run on the pool's: its measured latency would be
            # filed under a thread count it does not have
            raise ConfigError(f"threading 'global': ONNX Runtime's process-wide pool already has "
                              f"{_global_pool[0] or 'default'} intra-op threads, and one process has one such pool; "
                              f"cannot also serve threads={threads} (use one thread count, or threading 'nospin')")


def session_options(threads: int | None, threading_mode: ThreadingMode = DEFAULT_THREADING) -> Any:
    """SessionOptions for one sub-net session under ``threading_mode`` (see module docstring)."""
    import onnxruntime as ort

    if threading_mode not in THREADING_MODES:
        raise ConfigError(f"unknown ONNX Runtime threading mode {threading_mode!r}; expected one of "
                          f"{', '.join(THREADING_MODES)}")
    so = ort.SessionOptions()
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if threading_mode == "global":
        _ensure_global_pool(threads)
        so.use_per_session_threads = False
    else:
        if threads is not None:
            so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        if threading_mode == "nospin":
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        elif threading_mode == "spinstop":
            so.add_session_config_entry("session.force_spinning_stop", "1")
    return so


class OnnxRuntimeRunner(Runner):
    """One ``onnxruntime.InferenceSession``; ``infer`` is a closure over ``session.run``.

    ``options.extra``: ``threading`` ("spinstop" | "nospin" | "global" | "spin").
    """

    name = "onnxruntime"

    def __init__(self, model_path: str | Path, options: RunnerOptions | None = None) -> None:
        super().__init__(model_path, options)
        self.session: Any = None
        self.steady_session: Any = None
        self.clear_session: Any = None
        self._variant_infers: dict[str, Any] = {}
        self._steady_lock = threading.Lock()
        self.threading: ThreadingMode = self.options.extra.get("threading", DEFAULT_THREADING)

    @property
    def providers(self) -> list[str]:
        if self.session is not None:
            return list(self.session.get_providers())
        return [p if isinstance(p, str) else p[0] for p in providers_for(self.options.device, self.options.precision)]

    def _session(self, threading_mode: ThreadingMode) -> Any:
        import onnxruntime as ort

        opts = self.options
        so = session_options(opts.threads, threading_mode)
        provs = providers_for(opts.device, opts.precision)
        try:
            sess = ort.InferenceSession(str(self.model_path), sess_options=so, providers=provs)
        except Exception as e:
            if opts.device == "cpu" or provs[0] == "CUDAExecutionProvider":
                raise
            log.warning("TensorRT execution provider failed (%s); retrying with CUDA", e)
            provs = [p for p in provs if not (isinstance(p, tuple) and p[0] == "TensorrtExecutionProvider")]
            sess = ort.InferenceSession(str(self.model_path), sess_options=so, providers=provs)
        if opts.device != "cpu" and sess.get_providers()[0] == "CPUExecutionProvider":
            raise BackendUnavailableError(f"ONNX Runtime could not start a GPU session for {self.model_path.name}; "
                                          f"{_GPU_HINT}.")
        return sess

    def _bind(self, sess: Any) -> Any:
        """``infer`` as a closure over ``sess.run`` (input and output names checked once)."""
        opts = self.options
        in_names = [i.name for i in sess.get_inputs()]
        if opts.input_name not in in_names:
            raise ConfigError(f"{self.model_path.name}: expected input {opts.input_name!r}, the model has {in_names}")
        out = [opts.output_name or sess.get_outputs()[0].name]
        run = sess.run
        iname = opts.input_name

        def infer(x: np.ndarray) -> np.ndarray:
            return run(out, {iname: x})[0]

        return infer

    def _load_impl(self) -> None:
        sess = self._session(self.threading)
        self.session = sess
        self.infer = self._bind(sess)  # type: ignore[method-assign]

    def infer(self, x: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"{self!r} is not loaded; call load() first")

    def _variant_infer(self, kind: str) -> Any:
        """``infer`` of a second session of the same file under another threading mode (``_VARIANTS[kind]``),
        created on the first call; None unless this runner is a CPU ``"nospin"`` one with more than one thread
        (one thread has no pool to spin; the other modes already spin or share a pool)."""
        opts = self.options
        if not self.loaded or opts.device != "cpu" or self.threading != "nospin" or opts.threads == 1:
            return None
        with self._steady_lock:
            if self.session is None:  # closed meanwhile (close clears it before taking this lock)
                return None
            f = self._variant_infers.get(kind)
            if f is None:
                sess = self._session(_VARIANTS[kind])
                f = self._variant_infers[kind] = self._bind(sess)
                setattr(self, f"{kind}_session", sess)
            return f

    def steady_infer(self) -> Any:
        """A second session with ONNX Runtime's default (spinning) intra-op pool, for long runs of calls on this
        sub-net (see :meth:`_variant_infer` for when there is none)."""
        return self._variant_infer("steady")

    def clear_infer(self) -> Any:
        """A second session whose workers spin during a run and stop at its end (``"spinstop"``), for calls while
        the device is otherwise idle: near a spinning session's speed, and no idle spinner left behind to slow the
        next sub-net's call (see :meth:`_variant_infer` for when there is none)."""
        return self._variant_infer("clear")

    def _close_impl(self) -> None:
        self.__dict__.pop("infer", None)
        self.session = None
        with self._steady_lock:
            self.steady_session = self.clear_session = None
            self._variant_infers = {}


register_backend(BackendInfo(name="onnxruntime", factory=OnnxRuntimeRunner, probe=probe, model_kind="onnx"))
