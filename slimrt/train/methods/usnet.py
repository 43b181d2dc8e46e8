"""Universally Slimmable Networks (Yu & Huang, 2019) as a baseline for the progressive search.

One set of weights is trained for every *uniform* width multiplier in ``[0.25, 1.0]`` (continuous): at each step
the sandwich rule trains the largest width, the smallest width and ``cfg.sampled_subnets`` (2) random widths,
the narrower ones distilled in place from the largest (``cfg.distill``). After training, every evaluated width
gets its own BatchNorm statistics (post-training calibration, BN layers in train mode, cumulative average).
Widths are evaluated at the MACs of the progressive sub-nets: :func:`match_macs` solves for the uniform width
whose MACs match a target.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from slimrt.errors import ConfigError
from slimrt.schema import SubnetSpec
from slimrt.train.loops import (
    ComputeMeter,
    Sampler,
    make_generator,
    make_optimizer,
    sampled_train_macs,
    steps_per_epoch,
    train_epochs,
    train_steps,
)
from slimrt.train.methods.base import (
    BaselineReport,
    MethodContext,
    MethodReport,
    TrainingMethod,
    default_targets,
    evaluate_specs,
    match_macs,
    register_method,
)

if TYPE_CHECKING:
    from rich.progress import Progress

    from slimrt.train.config import SearchConfig
    from slimrt.train.data import Dataset
    from slimrt.train.dynamic import DynamicNet

__all__ = ["USNET_WIDTH_RANGE", "usnet_ratios", "usnet_sampler", "steps_for_budget", "train_usnet", "USNets"]

log = logging.getLogger(__name__)

USNET_WIDTH_RANGE: tuple[float, float] = (0.25, 1.0)
"""Width multipliers US-Nets trains (the paper's range for ResNets and MobileNets)."""


# --------------------------------------------------------------------------------------------------------- sampling


def usnet_ratios(step: int, seed: int, n_random: int = 2,
                 width_range: tuple[float, float] = USNET_WIDTH_RANGE) -> list[float]:  # fmt: skip
    """Width multipliers of one sandwich step: max, min and ``n_random`` uniform draws (a pure function of step)."""
    lo, hi = width_range
    g = make_generator(seed, "usnet-widths", step)
    rand = (lo + (hi - lo) * torch.rand(n_random, generator=g, dtype=torch.float64)).tolist()
    return [hi, lo, *rand]


def usnet_sampler(net: DynamicNet, seed: int, n_random: int = 2,
                  width_range: tuple[float, float] = USNET_WIDTH_RANGE) -> Sampler:  # fmt: skip
    """``sampler(step) -> specs``: the sandwich of :func:`usnet_ratios` as uniform sub-nets of ``net``.

    Seeded identically on every rank, so data-parallel ranks train the same widths at each step.
    """
    cache: dict[float, SubnetSpec] = {}

    def spec_of(r: float) -> SubnetSpec:
        s = cache.get(r)
        if s is None:
            if len(cache) > 4096:
                cache.clear()
            s = cache[r] = net.uniform_spec(r, f"us{r:.6f}")
        return s

    return lambda step: [spec_of(r) for r in usnet_ratios(step, seed, n_random, width_range)]


def steps_for_budget(sampler: Sampler, batch: int, budget_macs: int, max_steps: int = 10_000_000) -> int:
    """Smallest number of steps whose forward+backward MACs (3 x batch x sum of sampled MACs) reach the budget."""
    spent, step = 0, 0
    while spent < budget_macs and step < max_steps:
        spent += sampled_train_macs(sampler, batch, 1, start=step)
        step += 1
    return max(1, step)


# --------------------------------------------------------------------------------------------------------- training


def train_usnet(
    cfg: SearchConfig,
    data: Dataset,
    net: DynamicNet,
    progress: Progress | None = None,
    meter: ComputeMeter | None = None,
    *,
    targets: Sequence[int] | None = None,
    budget_macs: int | None = None,
    width_range: tuple[float, float] | None = None,
    forward: nn.Module | None = None,
    batch_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    start_epoch: int = 0,
    on_epoch_end: Callable[[int, torch.optim.Optimizer], None] | None = None,
) -> tuple[list[SubnetSpec], BaselineReport]:
    """Fine-tune ``net`` (the pre-trained full network) as a US-Net, then evaluate it at the MACs ``targets``.

    Training: ``cfg.epochs`` epochs of sandwich steps (widest, narrowest, ``cfg.sampled_subnets`` random widths;
    in-place distillation when ``cfg.distill``), cosine schedule from ``cfg.finetune_lr``. With ``budget_macs``
    the run instead takes as many steps as needed to spend that many training MACs (fair-compute comparisons).
    Evaluation: for each target the uniform width matching its MACs (:func:`match_macs`), BN calibrated per width.

    Args:
        targets: MACs of the sub-nets to report (default :func:`default_targets`), e.g. the progressive sub-nets'.
        budget_macs: forward+backward MACs to spend on training (overrides ``cfg.epochs``).
        width_range: the trained range of width multipliers (default ``(cfg.usnet_min_width, 1.0)``).
        forward: module called for forward passes (the DistributedDataParallel wrapper of ``net``).
        batch_transform: per-batch transform (sharding across ranks); epoch-based runs only.
        optimizer_state, start_epoch, on_epoch_end: resume an interrupted epoch-based run (optimiser state and
            epochs done) and checkpoint after every epoch (see :func:`slimrt.train.loops.train_epochs`).

    Returns:
        The evaluated sub-nets (``usnet0`` widest first, val/test accuracy set; their BN statistics are stored in
        ``net`` under those names) and a :class:`BaselineReport`.
    """
    meter = meter if meter is not None else ComputeMeter()
    width_range = width_range if width_range is not None else (cfg.usnet_min_width, USNET_WIDTH_RANGE[1])
    phase = "usnet"
    before_train = meter.by_phase.get(phase, 0)
    before_other = meter.other_macs
    sampler = usnet_sampler(net, cfg.seed, cfg.sampled_subnets, width_range)
    t0 = time.perf_counter()
    if budget_macs is not None:
        if batch_transform is not None:
            raise ConfigError("a MACs budget is only supported single-process (no batch_transform)")
        steps = steps_for_budget(sampler, cfg.batch_size, budget_macs)
        stats = train_steps(net, data, sampler, steps, cfg, progress, meter, lr=cfg.finetune_lr, phase=phase,
                            distill=cfg.distill, forward=forward)  # fmt: skip
        epochs = steps / steps_per_epoch(data, cfg.batch_size)
    else:
        opt = make_optimizer(net, cfg.finetune_lr, cfg.momentum, cfg.weight_decay)
        if optimizer_state is not None:
            opt.load_state_dict(optimizer_state)
        stats = train_epochs(net, data, sampler, cfg.epochs, cfg, progress, meter, lr=cfg.finetune_lr, phase=phase,
                             distill=cfg.distill, forward=forward, batch_transform=batch_transform, optimizer=opt,
                             start_epoch=start_epoch, on_epoch_end=on_epoch_end)  # fmt: skip
        epochs = float(cfg.epochs)
    train_seconds = time.perf_counter() - t0

    targets = list(targets) if targets is not None else default_targets(net, cfg)
    matched, ratios = [], []
    for i, t in enumerate(sorted(targets, reverse=True)):
        spec, r = match_macs(net, int(t), name=f"usnet{i}", width_range=width_range)
        matched.append(spec)
        ratios.append(r)
    evaluated = evaluate_specs(net, matched, data, cfg, meter, progress)
    report = BaselineReport(
        method="usnet",
        steps=stats.steps,
        epochs=epochs,
        train_macs=meter.by_phase.get(phase, 0) - before_train,
        other_macs=meter.other_macs - before_other,
        budget_macs=budget_macs,
        seconds=time.perf_counter() - t0,
        distill=cfg.distill,
        width_range=width_range,
        targets=sorted((int(t) for t in targets), reverse=True),
        achieved=[s.macs for s in evaluated],
        ratios=ratios,
        per_subnet=[{"name": s.name, "ratio": r, "macs": s.macs} for s, r in zip(evaluated, ratios, strict=True)],
        train_seconds=train_seconds,
    )
    for s, t in zip(evaluated, report.targets, strict=True):
        if t and abs(s.macs - t) / t > 0.05:
            report.notes.append(f"{s.name}: achieved {s.macs} MACs for target {t} (outside the trained width range)")
    log.info("US-Nets: %d steps, %.3g training MACs, %s", stats.steps, report.train_macs,
             ", ".join(f"{s.name} {s.test_accuracy:.2f}%" for s in evaluated))  # fmt: skip
    return evaluated, report


@register_method
class USNets(TrainingMethod):
    """``--method usnet``: :func:`train_usnet` from the pre-trained full network (resumable after every epoch)."""

    name = "usnet"

    def run(self, ctx: MethodContext) -> tuple[list[SubnetSpec], MethodReport]:
        resumed = ctx.resume is not None and ctx.resume.get("epoch") is not None

        def epoch_done(epoch: int, opt: torch.optim.Optimizer) -> None:  # resumable after every epoch
            ctx.checkpoint({"epoch": epoch + 1, "optimizer": opt.state_dict()}, f"usnet-epoch-{epoch + 1}")

        return train_usnet(ctx.cfg, ctx.data, ctx.net, ctx.progress, ctx.meter, forward=ctx.ddp.forward,
                           batch_transform=ctx.ddp.batch_transform, on_epoch_end=epoch_done,
                           optimizer_state=ctx.resume["optimizer"] if resumed else None,
                           start_epoch=int(ctx.resume["epoch"]) if resumed else 0)  # fmt: skip
