"""One interface for every training method, a small registry, and what methods share.

A method turns the (pre-trained) full network into nested sub-nets: ``TrainingMethod.run(ctx)`` gets a
:class:`MethodContext` (config, data, network, progress, compute meter, resume payload, checkpoint callback and the
data-parallel arguments) and returns ``(specs, report)``: the sub-nets, largest first, with val/test accuracy, and a
:class:`MethodReport`. Methods register under their ``--method`` name with :func:`register_method`;
:func:`get_method` finds them (the built-in ones are imported on first use).

Shared by the methods: :func:`evaluate_specs` (the final BN calibration and evaluation), :func:`default_targets`
and :func:`match_macs` (MACs targets and the uniform-width sub-net matching one).
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, Field
from torch import nn

from slimrt.errors import ConfigError
from slimrt.schema import SubnetSpec
from slimrt.train.loops import ComputeMeter, calibrate, calibration_batches, evaluate

if TYPE_CHECKING:
    from rich.progress import Progress

    from slimrt.train.config import SearchConfig
    from slimrt.train.data import Dataset
    from slimrt.train.dynamic import DynamicNet

__all__ = [
    "DDPArgs",
    "MethodContext",
    "MethodReport",
    "BaselineReport",
    "TrainingMethod",
    "register_method",
    "get_method",
    "available_methods",
    "evaluate_specs",
    "default_targets",
    "match_macs",
]

log = logging.getLogger(__name__)

BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


# ------------------------------------------------------------------------------------------------ the interface


@dataclass(frozen=True)
class DDPArgs:
    """Data-parallel arguments every method gets (all None in a single process).

    Attributes:
        forward: the DistributedDataParallel wrapper of the context's network (call it for training forwards).
        batch_transform: keeps this rank's slice of every global batch.
        wrap: wraps another network the method trains (the independent baseline's fresh sub-nets).
    """

    forward: nn.Module | None = None
    batch_transform: BatchTransform | None = None
    wrap: Callable[[nn.Module], nn.Module] | None = None


@dataclass
class MethodContext:
    """What the trainer hands a method."""

    cfg: SearchConfig
    data: Dataset
    net: DynamicNet
    progress: Progress | None = None
    meter: ComputeMeter = field(default_factory=ComputeMeter)
    resume: dict[str, Any] | None = None
    """The interrupted run's resume payload when it stopped inside the method (phase ``search``), else None."""
    save: Callable[[dict[str, Any], str], None] | None = None
    """``save(state, event)`` writes a resume checkpoint holding the weights and ``state``."""
    ddp: DDPArgs = field(default_factory=DDPArgs)

    def checkpoint(self, state: dict[str, Any], event: str) -> None:
        """Write a resume checkpoint with the method's ``state`` (a no-op when the run is not checkpointed)."""
        if self.save is not None:
            self.save(state, event)


class MethodReport(BaseModel):
    """What a method did (JSON-able: ``report.model_dump()``); each method's report extends it."""

    method: str
    notes: list[str] = Field(default_factory=list)


class BaselineReport(MethodReport):
    """What a baseline run (US-Nets, independent) did: training steps and compute, per-sub-net details."""

    steps: int = 0
    epochs: float = 0.0
    train_macs: int = Field(0, description="forward+backward MACs of this method's training phase (3 x fwd)")
    other_macs: int = Field(0, description="forward-only MACs (BN calibration, evaluation)")
    budget_macs: int | None = Field(None, description="training MACs the run was asked to spend, if any")
    seconds: float = 0.0
    train_seconds: float = 0.0
    distill: bool | None = None
    width_range: tuple[float, float] | None = None
    targets: list[int] = Field(default_factory=list, description="MACs targets, one per evaluated sub-net")
    achieved: list[int] = Field(default_factory=list, description="MACs of the sub-net evaluated for each target")
    ratios: list[float] = Field(default_factory=list, description="US-Nets width multiplier for each target")
    per_subnet: list[dict[str, Any]] = Field(default_factory=list, description="per-sub-net details")


class TrainingMethod(ABC):
    """A way of training nested sub-nets, selected by ``--method <name>``."""

    name: ClassVar[str]
    pretrain: ClassVar[bool] = True
    """Whether the trainer pre-trains the full network (``--pretrain-epochs``) before :meth:`run`."""

    @abstractmethod
    def run(self, ctx: MethodContext) -> tuple[list[SubnetSpec], MethodReport]:
        """Train and evaluate; returns the sub-nets (largest first, val/test accuracy set) and the report."""


_METHODS: dict[str, type[TrainingMethod]] = {}
_BUILTIN = {
    "progressive": "slimrt.train.methods.progressive",
    "usnet": "slimrt.train.methods.usnet",
    "independent": "slimrt.train.methods.independent",
}


def register_method(cls: type[TrainingMethod]) -> type[TrainingMethod]:
    """Class decorator: make ``cls`` available as ``--method cls.name``."""
    _METHODS[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    """Names of the registered and built-in methods."""
    return sorted(set(_METHODS) | set(_BUILTIN))


def get_method(name: str) -> TrainingMethod:
    """The method registered as ``name`` (built-in methods are imported on first use)."""
    if name not in _METHODS and name in _BUILTIN:
        try:
            importlib.import_module(_BUILTIN[name])
        except ImportError as e:
            raise ConfigError(f"--method {name} is not available in this slimrt ({e})") from e
    if name not in _METHODS:
        raise ConfigError(f"unknown --method {name!r}; available: {', '.join(available_methods())}")
    return _METHODS[name]()


# ---------------------------------------------------------------------------------------------------- shared


def evaluate_specs(
    net: DynamicNet,
    specs: Sequence[SubnetSpec],
    data: Dataset,
    cfg: SearchConfig,
    meter: ComputeMeter | None = None,
    progress: Progress | None = None,
    calibrate_bn: bool = True,
    *,
    batches: Sequence[torch.Tensor] | None = None,
) -> list[SubnetSpec]:
    """The final evaluation of every method: calibrate each spec's BN statistics and record val/test accuracy.

    Args:
        calibrate_bn: recompute the BN statistics first (False: a network trained at that one width).
        batches: calibration images (default :func:`~slimrt.train.loops.calibration_batches` of ``cfg``).

    Returns:
        The specs with ``val_accuracy`` (None without a validation split) and ``test_accuracy`` set.
    """
    if calibrate_bn:
        if batches is None:
            batches = calibration_batches(data, cfg.search_steps(len(data.y_train)).calib_batches, cfg.batch_size,
                                          cfg.seed)  # fmt: skip
        calibrate(net, specs, batches, meter, progress)
    out = []
    for spec in specs:
        val = evaluate(net, spec, data.x_val, data.y_val, cfg.eval_batch_size, meter) if len(data.y_val) else None
        test = evaluate(net, spec, data.x_test, data.y_test, cfg.eval_batch_size, meter)
        out.append(spec.with_accuracy(val=val, test=test))
    return out


def match_macs(
    net: DynamicNet,
    target_macs: int,
    name: str = "matched",
    width_range: tuple[float, float] = (1e-3, 1.0),
    round_to: int = 1,
    iters: int = 60,
) -> tuple[SubnetSpec, float]:
    """The uniform-width sub-net whose MACs are closest to ``target_macs``, found by bisection over the ratio.

    MACs are non-decreasing in the ratio (every group keeps ``ceil(ratio * C)`` channels), so bisection brackets
    the target between two neighbouring uniform sub-nets; the closer of the two is returned. Targets outside the
    MACs of ``width_range`` are clamped to its ends (logged).

    Returns:
        ``(spec, ratio)``: the matched sub-net (named ``name``, achieved MACs in ``spec.macs``) and its ratio.
    """
    lo, hi = float(width_range[0]), float(width_range[1])
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"width_range must satisfy 0 < lo <= hi <= 1, got {width_range}")

    def at(r: float) -> SubnetSpec:
        return net.uniform_spec(r, name, round_to=round_to)

    lo_spec, hi_spec = at(lo), at(hi)
    if target_macs <= lo_spec.macs:
        if target_macs < lo_spec.macs:
            log.info("MACs target %d below width %.3f (%d MACs): clamped", target_macs, lo, lo_spec.macs)
        return lo_spec, lo
    if target_macs >= hi_spec.macs:
        if target_macs > hi_spec.macs:
            log.info("MACs target %d above width %.3f (%d MACs): clamped", target_macs, hi, hi_spec.macs)
        return hi_spec, hi
    # Invariant: macs(lo) < target <= macs(hi).
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        m = at(mid)
        if m.macs < target_macs:
            lo, lo_spec = mid, m
        else:
            hi, hi_spec = mid, m
        if hi - lo < 1e-9:
            break
    if target_macs - lo_spec.macs < hi_spec.macs - target_macs:
        return lo_spec, lo
    return hi_spec, hi


def default_targets(net: DynamicNet, cfg: SearchConfig) -> list[int]:
    """MACs targets when none are given: ``cfg.macs_targets``, else ``cfg.subnets`` fractions evenly spaced
    from the full network down to ``cfg.min_macs`` (largest first)."""
    full = net.macs()
    if cfg.macs_targets:
        fracs = list(cfg.macs_targets)
    elif cfg.subnets == 1:
        fracs = [1.0]
    else:
        k = cfg.subnets
        fracs = [1.0 - i * (1.0 - cfg.min_macs) / (k - 1) for i in range(k)]
    return [int(round(f * full)) for f in fracs]
