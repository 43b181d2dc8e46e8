"""slimrt: train once, ship one artifact, run the most accurate nested sub-net that meets the latency budget.

``import slimrt`` never imports torch; :class:`SlimRuntime` needs only numpy, onnxruntime and pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slimrt.errors import (
    ArtifactError,
    BackendUnavailableError,
    BudgetError,
    CheckpointError,
    InputError,
    SlimrtError,
)
from slimrt.schema import DeviceProfile, LatencyProfile, Manifest, SubnetSpec

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "SlimRuntime",
    "SubnetSpec",
    "Manifest",
    "DeviceProfile",
    "LatencyProfile",
    "SlimrtError",
    "ArtifactError",
    "InputError",
    "BudgetError",
    "CheckpointError",
    "BackendUnavailableError",
]

if TYPE_CHECKING:
    from slimrt.runtime import SlimRuntime


def __getattr__(name: str) -> Any:
    # SlimRuntime pulls in onnxruntime; load it on first use so `import slimrt` stays instant.
    if name == "SlimRuntime":
        from slimrt.runtime import SlimRuntime

        return SlimRuntime
    raise AttributeError(f"module 'slimrt' has no attribute {name!r}")
