"""Pure helpers of one progressive search step: unit sizes, the next candidate's cost target (MACs or predicted
latency), importance per millisecond, and the fine-tuning threshold (re-exported by
:mod:`slimrt.train.methods.progressive`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from slimrt.schema import SubnetSpec
from slimrt.train.ranking import Unit

if TYPE_CHECKING:
    from slimrt.train.config import SearchConfig
    from slimrt.train.dynamic import DynamicNet

__all__ = ["unit_size", "min_keep", "group_units", "step_target", "latency_step_target", "per_ms", "needs_finetune"]


def unit_size(channels: int, group_size: int, min_units: int = 4) -> int:
    """Channels per unit of a group: ``group_size``, smaller for groups narrower than ``min_units * group_size``."""
    return max(1, min(group_size, channels // max(1, min_units)))


def min_keep(channels: int, unit: int, min_width: float = 0.0) -> int:
    """Fewest channels a group may keep: one unit, or ``min_width`` of the group rounded up to whole units."""
    k = max(unit, unit * math.ceil(min_width * channels / unit - 1e-9))
    return min(channels, k)


def group_units(net: DynamicNet, spec: SubnetSpec, group_size: int, min_units: int = 4) -> list[Unit]:
    """The units of every prunable group kept by ``spec``: blocks ``[i*u, (i+1)*u)`` of the kept prefix."""
    widths = net.widths(spec)
    units = []
    for g in net.prunable_groups:
        u = unit_size(g.channels, group_size, min_units)
        w = widths[g.name]
        units.extend(Unit(g.name, s, min(s + u, w)) for s in range(0, w, u))
    return units


def step_target(macs: float, full_macs: float, cfg: SearchConfig, min_fraction: float | None = None) -> float:
    """MACs of the next candidate: ``macs_step`` of the full MACs less, but never more than ``max_cut`` of the
    current MACs less (gentle steps among small sub-nets), and never below ``min_fraction`` (default ``min_macs``)
    of the full MACs."""
    cut = min(cfg.macs_step * full_macs, cfg.max_cut * macs)
    return max(macs - cut, (cfg.min_macs if min_fraction is None else min_fraction) * full_macs)


def latency_step_target(ms: float, full_ms: float, cfg: SearchConfig, min_fraction: float | None = None) -> float:
    """Predicted ms of the next candidate (cost latency): ``latency_step`` of the full network's predicted ms less,
    never more than ``max_cut`` of the current ms less, never below ``min_fraction`` (default ``min_latency``) of
    the full."""
    cut = min(cfg.latency_step * full_ms, cfg.max_cut * ms)
    return max(ms - cut, (cfg.min_latency if min_fraction is None else min_fraction) * full_ms)


def per_ms(scores: torch.Tensor, ms_saved: torch.Tensor) -> torch.Tensor:
    """Importance per predicted millisecond saved: scores shifted to be positive (the least important unit gets 5%
    of the score range above zero, so order within a group is kept), divided by what removing each unit saves.
    A unit whose removal saves many ms for little importance gets the lowest score and goes first."""
    s = scores.double()
    if s.numel() == 0:
        return s
    span = float(s.max() - s.min())
    shifted = s - s.min() + (0.05 * span if span > 0 else 1.0)
    return shifted / ms_saved.double().clamp_min(1e-9)


def needs_finetune(prev_acc: float, acc: float, threshold: float, always: bool = False, steps: int = 1) -> bool:
    """Fine-tune iff the accuracy fell more than ``threshold`` points (or ``always``); never when ``steps`` is 0."""
    if steps <= 0:
        return False
    if always:
        return True
    return prev_acc - acc > threshold
