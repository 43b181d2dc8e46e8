"""Open an artifact's sub-nets on a device: the one place that picks the backend and loads every runner.

``SlimRuntime``, ``slimrt bench`` and the benchmarks call :func:`open_runners`, so what the bench measures is what
the runtime serves: the same backend resolution, the same model files (ONNX, TensorRT engines for this GPU, or
``torch.export`` programs), the same precision and options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimrt.artifact import resolve_inside
from slimrt.backends.base import DEVICES, Runner, RunnerOptions, available_backends, backend_info
from slimrt.errors import ArtifactError, BackendUnavailableError, ConfigError
from slimrt.fingerprint import gpu_info, package_version
from slimrt.schema import EngineSet, Manifest

__all__ = ["ArtifactRunners", "matching_engines", "resolve_backend", "open_runners"]


def matching_engines(manifest: Manifest) -> EngineSet | None:
    """The artifact's engine set built for this GPU and installed TensorRT, with an engine for every sub-net."""
    gpu, _ = gpu_info()
    trt = package_version("tensorrt", "tensorrt-cu12", "tensorrt-cu11")
    names = {s.name for s in manifest.subnets}
    for es in manifest.engines:
        if gpu and es.gpu_name == gpu and (trt is None or es.tensorrt_version == trt):
            if names <= {e.subnet for e in es.engines}:
                return es
    return None


def resolve_backend(manifest: Manifest, device: str, backend: str = "auto") -> str:
    """The backend that will run ``manifest`` on ``device``.

    Raises:
        ConfigError: unknown device or backend name.
        BackendUnavailableError: the backend cannot run here (the message says what to install).
        ArtifactError: the artifact lacks the model files the backend needs (torch programs, engines for this GPU).
    """
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; expected one of {list(DEVICES)}")
    has_torch = all(s.torch_program is not None for s in manifest.subnets)
    if backend != "auto":
        reason = backend_info(backend).probe(device)
        if reason:
            raise BackendUnavailableError(reason)
        if backend == "torch" and not has_torch:
            raise ArtifactError("the artifact has no torch.export programs; re-export it with `slimrt export --torch`")
        if backend == "tensorrt" and matching_engines(manifest) is None:
            raise ArtifactError("the artifact has no TensorRT engines for this GPU and TensorRT version; build them "
                                "here with `slimrt export --engines-only ARTIFACT --tensorrt`")
        return backend
    avail = available_backends(device)
    if device == "cpu":
        if avail["onnxruntime"]:
            raise BackendUnavailableError(avail["onnxruntime"])
        return "onnxruntime"
    order = ["tensorrt", "onnxruntime", "torch"] if device == "jetson" else ["onnxruntime", "tensorrt", "torch"]
    for name in order:
        if avail.get(name) is None:
            if name == "tensorrt" and matching_engines(manifest) is None:
                continue
            if name == "torch" and not has_torch:
                continue
            return name
    raise BackendUnavailableError(avail["onnxruntime"] or f"no backend can run this artifact on {device}")


@dataclass
class ArtifactRunners:
    """One loaded runner per sub-net of an artifact (manifest order: largest first); a context manager.

    Attributes:
        backend: the resolved backend name.
        device: "cpu", "cuda" or "jetson".
        model_kind: "onnx", "engine" or "torch_program".
        precision: what the runners compute in (the engines' precision for native TensorRT, else "fp32").
        engines: the engine set in use (native TensorRT only).
        runners: sub-net name -> loaded runner.
    """

    backend: str
    device: str
    model_kind: str
    precision: str
    engines: EngineSet | None = None
    runners: dict[str, Runner] = field(default_factory=dict)

    @property
    def providers(self) -> list[str]:
        """What executes the models (the first runner's ONNX Runtime providers, or ['cpu']/['cuda'])."""
        return list(next(iter(self.runners.values())).providers) if self.runners else []

    def close(self) -> None:
        """Close every runner (idempotent)."""
        for r in self.runners.values():
            r.close()

    def __enter__(self) -> ArtifactRunners:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_runners(
    root: str | Path,
    manifest: Manifest,
    device: str = "cpu",
    backend: str = "auto",
    *,
    threads: int | None = None,
    extra: dict[str, Any] | None = None,
) -> ArtifactRunners:
    """Resolve the backend for ``device`` and load one runner per sub-net of the (verified) artifact at ``root``.

    Args:
        root: artifact directory.
        manifest: its manifest (from :func:`slimrt.artifact.verify_artifact`).
        device: "cpu", "cuda" or "jetson".
        backend: "auto" or a registered backend name (see :func:`resolve_backend`).
        threads: intra-op CPU threads per runner (None: the backend's default).
        extra: backend switches passed to every runner, e.g. ``{"threading": "nospin"}`` for ONNX Runtime.

    Raises:
        BackendUnavailableError, ArtifactError, ConfigError: as :func:`resolve_backend`; a runner that fails to
        load closes the ones already loaded.
    """
    name = resolve_backend(manifest, device, backend)
    info = backend_info(name)
    engines = matching_engines(manifest) if info.model_kind == "engine" else None
    out = ArtifactRunners(backend=name, device=device, model_kind=info.model_kind,
                          precision=engines.precision if engines is not None else "fp32", engines=engines)
    try:
        for s in manifest.subnets:
            onnx_path = resolve_inside(root, s.onnx.path)
            opts_extra = dict(extra or {})
            if info.model_kind == "onnx":
                path = onnx_path
            elif info.model_kind == "torch_program":
                if s.torch_program is None:
                    raise ArtifactError(f"sub-net {s.name!r} has no torch.export program; re-export with --torch")
                path = resolve_inside(root, s.torch_program.path)
            else:
                ref = next((e for e in engines.engines if e.subnet == s.name), None) if engines else None
                if ref is None:
                    raise ArtifactError(f"no TensorRT engine for sub-net {s.name!r} on this GPU; build them here with "
                                        "`slimrt export --engines-only ARTIFACT --tensorrt`")
                path = resolve_inside(root, ref.path)
                opts_extra["weight_stripped"] = ref.weight_stripped
            opts = RunnerOptions(device=device, threads=threads, input_name=manifest.input.name,
                                 output_name=manifest.output.name, onnx_path=onnx_path, precision=out.precision,
                                 extra=opts_extra)
            out.runners[s.name] = info.factory(path, opts).load()
    except BaseException:
        out.close()
        raise
    return out
