"""Training side of slimrt (needs torch): channel-group analysis, the dynamic network, search, baselines, data."""

from __future__ import annotations

from typing import Any

__all__ = ["DynamicNet", "ChannelGroup", "analyze", "load_checkpoint", "save_checkpoint", "Checkpoint"]

_LAZY = {
    "DynamicNet": "slimrt.train.dynamic",
    "ChannelGroup": "slimrt.train.graph",
    "analyze": "slimrt.train.graph",
    "load_checkpoint": "slimrt.train.checkpoint",
    "save_checkpoint": "slimrt.train.checkpoint",
    "Checkpoint": "slimrt.train.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'slimrt.train' has no attribute {name!r}")
