"""Training side of slimrt (needs torch): channel-group analysis, the dynamic network, search, baselines, data."""

from __future__ import annotations

from slimrt._lazy import lazy_getattr

__all__ = ["DynamicNet", "ChannelGroup", "analyze", "load_checkpoint", "save_checkpoint", "Checkpoint"]

_LAZY = {
    "DynamicNet": "slimrt.train.dynamic",
    "ChannelGroup": "slimrt.train.graph",
    "analyze": "slimrt.train.graph",
    "load_checkpoint": "slimrt.train.checkpoint",
    "save_checkpoint": "slimrt.train.checkpoint",
    "Checkpoint": "slimrt.train.checkpoint",
}

__getattr__ = lazy_getattr(__name__, _LAZY)
