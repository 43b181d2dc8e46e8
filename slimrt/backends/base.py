"""One runner interface for every inference backend, and the backend registry (no heavy imports here).

A backend module subclasses :class:`Runner` (``_load_impl``/``infer``/``_close_impl``) and calls
:func:`register_backend` with a probe saying whether it can run on a device. Optional libraries are imported
inside the runner, so a missing one is reported (one sentence: what to install), never crashed on.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slimrt.errors import BackendUnavailableError, ConfigError

__all__ = [
    "Device",
    "DEVICES",
    "Runner",
    "RunnerOptions",
    "BackendInfo",
    "register_backend",
    "available_backends",
    "create_runner",
    "backend_names",
    "backend_info",
]

log = logging.getLogger(__name__)

Device = Literal["cpu", "cuda", "jetson"]
DEVICES: tuple[str, ...] = ("cpu", "cuda", "jetson")


@dataclass(frozen=True)
class RunnerOptions:
    """Everything a runner needs besides its model file.

    Attributes:
        device: "cpu", "cuda" or "jetson".
        threads: intra-op CPU threads (None: the backend's default).
        input_name: name of the single input tensor.
        output_name: name of the output returned by :meth:`Runner.infer` (None: the first output).
        onnx_path: the sub-net's ONNX model, used by TensorRT to refit weight-stripped engines.
        precision: "fp32" or "fp16" (informational for ONNX/torch; chosen at build time for engines).
        extra: backend-specific switches (e.g. ``{"spinning": True}`` for ONNX Runtime).
    """

    device: str = "cpu"
    threads: int | None = None
    input_name: str = "input"
    output_name: str | None = None
    onnx_path: Path | None = None
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)


class Runner(ABC):
    """Runs one model file on one device. ``load()`` once, ``infer(x)`` many times (thread-safe), ``close()``.

    ``infer`` is the hot path: subclasses bind it to the fastest call the library offers and do no checking
    there (:class:`~slimrt.runtime.SlimRuntime` validates inputs once, before choosing a runner).
    """

    name: str = "base"

    def __init__(self, model_path: str | Path, options: RunnerOptions | None = None) -> None:
        self.model_path = Path(model_path)
        self.options = options or RunnerOptions()
        self.loaded = False

    @property
    def providers(self) -> list[str]:
        """What actually executes the model (ONNX Runtime provider names, or ['cpu']/['cuda'])."""
        return [self.options.device]

    def load(self) -> Runner:
        """Create the session/engine; returns self. Idempotent."""
        if not self.loaded:
            self._load_impl()
            self.loaded = True
            log.debug("%s runner loaded %s on %s (%s)", self.name, self.model_path.name, self.options.device,
                      ", ".join(self.providers))
        return self

    @abstractmethod
    def _load_impl(self) -> None: ...

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run the model on ``x`` and return its output (a new array)."""

    def steady_infer(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """An ``infer`` for long runs of calls on this runner alone (e.g. ONNX Runtime with spinning workers), or
        None when the backend has nothing faster. Creates what it needs on the first call (slow: call it off the
        hot path); thread-safe; :meth:`close` releases it too."""
        return None

    def clear_infer(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """An ``infer`` for calls while the device is otherwise idle (e.g. ONNX Runtime workers that spin during a
        run and stop at its end), or None when the backend has nothing faster there. Same contract as
        :meth:`steady_infer`."""
        return None

    def close(self) -> None:
        """Release the session/engine. Idempotent."""
        if self.loaded:
            self._close_impl()
            self.loaded = False

    def _close_impl(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Runner:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_path.name!r}, device={self.options.device!r})"


@dataclass(frozen=True)
class BackendInfo:
    """A registered backend: a runner factory and a probe returning None (usable) or why not + what to install."""

    name: str
    factory: Callable[[Path, RunnerOptions], Runner]
    probe: Callable[[str], str | None]
    model_kind: Literal["onnx", "engine", "torch_program"]
    devices: tuple[str, ...] = DEVICES


_REGISTRY: dict[str, BackendInfo] = {}


def register_backend(info: BackendInfo) -> None:
    """Add (or replace) a backend in the registry."""
    _REGISTRY[info.name] = info


def _ensure_registered() -> None:
    # Importing the package registers the built-in backends (their modules import nothing heavy).
    import slimrt.backends  # noqa: F401


def backend_names() -> list[str]:
    """Names of every registered backend."""
    _ensure_registered()
    return list(_REGISTRY)


def backend_info(name: str) -> BackendInfo:
    """The registry entry of ``name``; ConfigError listing the known names otherwise."""
    _ensure_registered()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown backend {name!r}; expected one of {sorted(_REGISTRY)} or 'auto'") from None


def available_backends(device: str = "cpu") -> dict[str, str | None]:
    """Every registered backend -> None when usable on ``device`` here, else one sentence saying what to install."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; expected one of {list(DEVICES)}")
    _ensure_registered()
    out: dict[str, str | None] = {}
    for name, info in _REGISTRY.items():
        try:
            out[name] = info.probe(device)
        except Exception as e:  # a broken install must not break the listing
            out[name] = f"{name} could not be probed ({type(e).__name__}: {e})"
    return out


def create_runner(backend: str, model_path: str | Path, options: RunnerOptions | None = None, **kw: Any) -> Runner:
    """Create and load a runner of ``backend`` for ``model_path``; keyword args fill :class:`RunnerOptions`.

    Raises:
        BackendUnavailableError: the backend cannot run on the requested device here (says what to install).
    """
    opts = options or RunnerOptions(**kw)
    if opts.device not in DEVICES:
        raise ConfigError(f"unknown device {opts.device!r}; expected one of {list(DEVICES)}")
    info = backend_info(backend)
    reason = info.probe(opts.device)
    if reason is not None:
        raise BackendUnavailableError(reason)
    return info.factory(Path(model_path), opts).load()
