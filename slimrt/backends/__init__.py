"""Inference backends behind one :class:`~slimrt.backends.base.Runner` interface.

Importing this package registers the built-in backends (``onnxruntime``, ``tensorrt``, ``torch``); none of their
libraries is imported until a runner is loaded. :func:`open_runners` resolves the backend for a device and loads
every sub-net of an artifact (what ``SlimRuntime`` and ``slimrt bench`` both use).
"""

from __future__ import annotations

from slimrt.backends import onnxrt, tensorrt, torch_backend  # noqa: F401  (registration)
from slimrt.backends.artifact import ArtifactRunners, matching_engines, open_runners, resolve_backend
from slimrt.backends.base import (
    DEVICES,
    BackendInfo,
    Runner,
    RunnerOptions,
    available_backends,
    backend_info,
    backend_names,
    create_runner,
    register_backend,
)

__all__ = [
    "ArtifactRunners",
    "open_runners",
    "resolve_backend",
    "matching_engines",
    "DEVICES",
    "BackendInfo",
    "Runner",
    "RunnerOptions",
    "available_backends",
    "backend_info",
    "backend_names",
    "create_runner",
    "register_backend",
]
