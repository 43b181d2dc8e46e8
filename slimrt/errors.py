"""slimrt's error hierarchy: every message says what was expected, what was found, and what to do."""

from __future__ import annotations

__all__ = [
    "SlimrtError",
    "ArtifactError",
    "InputError",
    "BudgetError",
    "CheckpointError",
    "GraphError",
    "BackendUnavailableError",
    "ProfileError",
    "ExportError",
    "ValidationMismatchError",
    "DataError",
    "ConfigError",
]


class SlimrtError(Exception):
    """Base class of every error slimrt raises on purpose."""

    exit_code: int = 1


class ArtifactError(SlimrtError):
    """An artifact (directory with manifest.json) is missing, truncated, tampered or unsupported."""


class InputError(SlimrtError, ValueError):
    """An input tensor does not match the artifact's input spec."""


class BudgetError(SlimrtError, ValueError):
    """A latency budget is not a positive finite number of milliseconds."""


class CheckpointError(SlimrtError):
    """A file is not a valid slimrt checkpoint (wrong format, truncated, or carries code)."""


class GraphError(SlimrtError):
    """Channel-group analysis met an operation it cannot reason about."""


class BackendUnavailableError(SlimrtError):
    """An inference backend (ONNX Runtime GPU, TensorRT, torch) is not installed or has no device."""


class ProfileError(SlimrtError):
    """A device profile (TOML) is missing or invalid."""


class ExportError(SlimrtError):
    """Export of a checkpoint to an artifact failed."""


class ValidationMismatchError(ExportError):
    """An exported sub-net differs from its PyTorch sub-net by more than the tolerance."""


class DataError(SlimrtError):
    """A dataset could not be found or read."""


class ConfigError(SlimrtError, ValueError):
    """A configuration value is invalid."""
