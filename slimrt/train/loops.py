"""Training utilities shared by every method: evaluation, optimiser and schedule, the joint (sandwich) step, epoch
loops with rich progress, a compute meter, BN calibration and seeded generators.

Every random draw of a phase comes from a generator derived from ``(seed, phase, epoch or step)``
(:func:`make_generator`), never from torch's global RNG, so a run interrupted at an epoch or search-step boundary
and resumed reproduces the uninterrupted run exactly on CPU.

Compute is counted in one unit for every method (:class:`ComputeMeter`): a training forward+backward of a sub-net
on one image costs ``3 x spec.macs``; a forward alone (evaluation, BN calibration) ``1 x spec.macs``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from slimrt.progress import add_task as _add_task
from slimrt.progress import advance as _advance
from slimrt.progress import finish as _finish
from slimrt.progress import make_progress
from slimrt.schema import SubnetSpec

if TYPE_CHECKING:
    from slimrt.train.config import SearchConfig
    from slimrt.train.data import Dataset
    from slimrt.train.dynamic import DynamicNet

__all__ = [
    "ComputeMeter",
    "TrainStats",
    "Sampler",
    "seed_everything",
    "derive_seed",
    "make_generator",
    "make_progress",
    "prepare_input",
    "wants_channels_last",
    "evaluate",
    "make_optimizer",
    "cosine_lr",
    "set_lr",
    "soft_cross_entropy",
    "joint_step",
    "steps_per_epoch",
    "train_epochs",
    "train_steps",
    "fixed_sampler",
    "sandwich_sampler",
    "sampled_train_macs",
    "calibration_batches",
    "calibrate",
]

log = logging.getLogger(__name__)

Sampler = Callable[[int], list[SubnetSpec]]
"""``sampler(step) -> specs`` trained at that global step; keep it a pure function of ``step`` for resumable runs."""


# --------------------------------------------------------------------------------------------- seeds and progress


def seed_everything(seed: int) -> None:
    """Seed torch's global RNG (model initialisation draws from it)."""
    torch.manual_seed(seed)


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (stable across processes and Python versions)."""
    text = "/".join([str(int(seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, *keys: int | str) -> torch.Generator:
    """A CPU generator seeded from ``(seed, *keys)``, e.g. ``make_generator(0, "pretrain", epoch)``."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


# --------------------------------------------------------------------------------------------------- compute meter


@dataclass
class ComputeMeter:
    """Counts MACs spent: ``train_macs`` (3 x forward MACs per trained image), ``other_macs`` (forwards only)."""

    train_macs: int = 0
    other_macs: int = 0
    train_images: int = 0
    steps: int = 0
    by_phase: dict[str, int] = field(default_factory=dict)

    def add_train(self, batch: int, macs: int, phase: str = "train") -> None:
        """One forward+backward of a sub-net with ``macs`` MACs on ``batch`` images."""
        n = 3 * int(batch) * int(macs)
        self.train_macs += n
        self.train_images += int(batch)
        self.by_phase[phase] = self.by_phase.get(phase, 0) + n

    def add_forward(self, batch: int, macs: int, phase: str = "eval") -> None:
        """A forward only (evaluation, BN calibration) of ``batch`` images."""
        n = int(batch) * int(macs)
        self.other_macs += n
        self.by_phase[phase] = self.by_phase.get(phase, 0) + n

    @property
    def total_macs(self) -> int:
        return self.train_macs + self.other_macs

    def state_dict(self) -> dict[str, Any]:
        return {"train_macs": self.train_macs, "other_macs": self.other_macs, "train_images": self.train_images,
                "steps": self.steps, "by_phase": dict(self.by_phase)}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_macs = int(state["train_macs"])
        self.other_macs = int(state["other_macs"])
        self.train_images = int(state["train_images"])
        self.steps = int(state["steps"])
        self.by_phase = {str(k): int(v) for k, v in state.get("by_phase", {}).items()}


# ------------------------------------------------------------------------------------------------------ evaluation


def wants_channels_last(net: nn.Module) -> bool:
    """True when the network's 4-d weights are stored channels-last (then inputs are converted to match)."""
    for p in net.parameters():
        if p.dim() == 4:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


def prepare_input(x: torch.Tensor, device: torch.device | str, channels_last: bool) -> torch.Tensor:
    """Move a batch to ``device`` and to channels-last when asked (4-d inputs only)."""
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def evaluate(
    net: DynamicNet,
    spec: SubnetSpec | None,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 500,
    meter: ComputeMeter | None = None,
) -> float:
    """Top-1 accuracy (percent) of sub-net ``spec`` (None = full) on ``(x, y)``, in eval mode.

    Uses the sub-net's own BN statistics when it has been calibrated under ``spec.name``.
    """
    if len(y) == 0:
        raise ValueError("cannot evaluate on an empty set")
    was_training = net.training
    net.eval()
    dev, cl = _device(net), wants_channels_last(net)
    correct = 0
    try:
        with net.use(spec):
            for start in range(0, len(y), batch_size):
                xb = prepare_input(x[start : start + batch_size], dev, cl)
                pred = net(xb).argmax(1)
                correct += int((pred.cpu() == y[start : start + batch_size]).sum())
    finally:
        net.train(was_training)
    if meter is not None:
        meter.add_forward(len(y), spec.macs if spec is not None else net.macs(), "eval")
    return 100.0 * correct / len(y)


# ----------------------------------------------------------------------------------------------- optimisation


def make_optimizer(
    params: nn.Module | Iterable[nn.Parameter],
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = True,
) -> torch.optim.SGD:
    """SGD (Nesterov) with weight decay on conv/linear weights only (not on BN parameters or biases)."""
    plist = list(params.parameters() if isinstance(params, nn.Module) else params)
    decay = [p for p in plist if p.requires_grad and p.dim() > 1]
    other = [p for p in plist if p.requires_grad and p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=momentum,
                           nesterov=nesterov and momentum > 0)  # fmt: skip


def cosine_lr(step: int, total: int, base_lr: float, warmup: int = 0) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up over ``warmup`` steps, then cosine to 0 at ``total``."""
    if total <= 0:
        return base_lr
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(1.0, max(0.0, t))))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (in-place distillation), averaged over the batch."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(1).mean()


def joint_step(
    net: DynamicNet,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    specs: Sequence[SubnetSpec],
    distill: bool = True,
    *,
    forward: nn.Module | None = None,
    meter: ComputeMeter | None = None,
    phase: str = "train",
) -> float:
    """One sandwich-style step over ``specs``: gradients of every sub-net accumulated, then one optimiser step.

    The largest spec (by MACs) learns from the labels with cross-entropy; every other spec learns from the largest
    one's detached softmax (in-place distillation), or from the labels when ``distill`` is False.

    Args:
        forward: module to call instead of ``net`` (e.g. its DistributedDataParallel wrapper).

    Returns:
        The largest sub-net's cross-entropy loss.
    """
    if not specs:
        raise ValueError("joint_step needs at least one sub-net spec")
    model = forward if forward is not None else net
    order = sorted(range(len(specs)), key=lambda i: -specs[i].macs)
    optimizer.zero_grad(set_to_none=True)
    soft: torch.Tensor | None = None
    first_loss = 0.0
    for j, i in enumerate(order):
        spec = specs[i]
        with net.use(spec):
            out = model(x)
        if j == 0 or not distill:
            loss = F.cross_entropy(out, y)
            if j == 0:
                first_loss = float(loss.detach())
                if distill:
                    soft = F.softmax(out.detach(), dim=1)
        else:
            assert soft is not None
            loss = soft_cross_entropy(out, soft)
        loss.backward()
        if meter is not None:
            meter.add_train(len(y), spec.macs, phase)
    optimizer.step()
    if meter is not None:
        meter.steps += 1
    return first_loss


# -------------------------------------------------------------------------------------------------------- samplers


def sampled_train_macs(sampler: Sampler, batch_size: int, steps: int, start: int = 0) -> int:
    """Forward+backward MACs (3 x forward per image, as :class:`ComputeMeter` counts) of ``steps`` joint steps of
    ``sampler`` from step ``start`` at ``batch_size``: what a budget-driven phase will spend, known in advance."""
    return sum(3 * batch_size * sum(s.macs for s in sampler(t)) for t in range(start, start + steps))


def fixed_sampler(specs: Sequence[SubnetSpec]) -> Sampler:
    """Train the same specs every step (``[full]`` for plain training)."""
    fixed = list(specs)
    return lambda step: list(fixed)


def sandwich_sampler(specs: Sequence[SubnetSpec], n_sampled: int, seed: int, phase: str = "sandwich") -> Sampler:
    """Largest and smallest spec every step plus ``n_sampled`` others drawn without replacement (seeded by step)."""
    ordered = sorted(specs, key=lambda s: -s.macs)
    if len(ordered) <= 2 + n_sampled:
        return fixed_sampler(ordered)
    middle = ordered[1:-1]

    def sample(step: int) -> list[SubnetSpec]:
        g = make_generator(seed, phase, step)
        pick = torch.randperm(len(middle), generator=g)[:n_sampled].sort().values.tolist()
        return [ordered[0], *(middle[i] for i in pick), ordered[-1]]

    return sample


# ------------------------------------------------------------------------------------------------------- training


@dataclass
class TrainStats:
    """What a training phase did."""

    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    last_loss: float = float("nan")
    epochs: int = 0


def _train_batches(data: Dataset, cfg: SearchConfig, phase: str, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
    g = make_generator(cfg.seed, phase, "epoch", epoch)
    return data.batches("train", cfg.batch_size, shuffle=True, augment=cfg.augment, generator=g, drop_last=True,
                        flip=cfg.flip)  # fmt: skip


def steps_per_epoch(data: Dataset, batch_size: int) -> int:
    """Optimiser steps in one epoch (the last incomplete batch is dropped; at least one step)."""
    return max(1, len(data.y_train) // batch_size)


def _step_loop(
    net: DynamicNet,
    opt: torch.optim.Optimizer,
    stream: Iterable[tuple[int, torch.Tensor, torch.Tensor]],
    sampler: Sampler,
    lr_at: Callable[[int], float],
    stats: TrainStats,
    *,
    distill: bool,
    forward: nn.Module | None,
    batch_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None,
    meter: ComputeMeter | None,
    phase: str,
    show: Callable[[float], None],
) -> None:
    """The one training step loop: for each ``(step, x, y)`` of ``stream`` set the learning rate, shard and move the
    batch, take a joint step over ``sampler(step)``, stop on a non-finite loss, count it in ``stats``."""
    dev, cl = _device(net), wants_channels_last(net)
    for step, xb, yb in stream:
        set_lr(opt, lr_at(step))
        if batch_transform is not None:
            xb, yb = batch_transform(xb, yb)
        xb, yb = prepare_input(xb, dev, cl), yb.to(dev)
        loss = joint_step(net, opt, xb, yb, sampler(step), distill, forward=forward, meter=meter, phase=phase)
        if not math.isfinite(loss):
            raise FloatingPointError(f"{phase}: loss became {loss} at step {step}; lower the learning rate")
        stats.steps += 1
        stats.images += len(yb)
        stats.last_loss = loss
        show(loss)


def train_epochs(
    net: DynamicNet,
    data: Dataset,
    sampler: Sampler,
    epochs: int,
    cfg: SearchConfig,
    progress: Progress | None = None,
    meter: ComputeMeter | None = None,
    *,
    lr: float | None = None,
    warmup_epochs: float = 0.0,
    phase: str = "train",
    distill: bool | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    start_epoch: int = 0,
    on_epoch_end: Callable[[int, torch.optim.Optimizer], None] | None = None,
    forward: nn.Module | None = None,
    batch_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> TrainStats:
    """Joint training for ``epochs`` epochs: at global step ``t`` the sub-nets ``sampler(t)`` take one joint step.

    The learning rate follows :func:`cosine_lr` over the whole phase (peak ``lr``, default ``cfg.lr``). Resume a
    phase by passing the optimizer state and ``start_epoch``; ``on_epoch_end(epoch, optimizer)`` runs after each
    epoch (checkpointing). ``batch_transform(x, y)`` may shard a batch across ranks.
    """
    base_lr = cfg.lr if lr is None else lr
    distill = cfg.distill if distill is None else distill
    spe = steps_per_epoch(data, cfg.batch_size)
    if len(data.y_train) < cfg.batch_size:
        raise ValueError(f"training set has {len(data.y_train)} images, fewer than batch_size {cfg.batch_size}")
    total, warmup = epochs * spe, int(round(warmup_epochs * spe))
    opt = optimizer or make_optimizer(net, base_lr, cfg.momentum, cfg.weight_decay)
    stats = TrainStats()
    task = _add_task(progress, phase, total, completed=start_epoch * spe)
    t0 = time.perf_counter()
    net.train()
    for epoch in range(start_epoch, epochs):
        stream = ((epoch * spe + i, xb, yb) for i, (xb, yb) in enumerate(_train_batches(data, cfg, phase, epoch)))
        label = f"epoch {epoch + 1}/{epochs}"
        _step_loop(net, opt, stream, sampler, lambda step: cosine_lr(step, total, base_lr, warmup), stats,
                   distill=distill, forward=forward, batch_transform=batch_transform, meter=meter, phase=phase,
                   show=lambda loss, label=label: _advance(progress, task, f"{label} loss {loss:.3f}"))  # fmt: skip
        stats.epochs += 1
        if on_epoch_end is not None:
            on_epoch_end(epoch, opt)
    _finish(progress, task)
    stats.seconds = time.perf_counter() - t0
    return stats


def train_steps(
    net: DynamicNet,
    data: Dataset,
    sampler: Sampler,
    steps: int,
    cfg: SearchConfig,
    progress: Progress | None = None,
    meter: ComputeMeter | None = None,
    *,
    lr: float,
    phase: str,
    distill: bool | None = None,
    forward: nn.Module | None = None,
    batch_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> TrainStats:
    """A short joint fine-tune of ``steps`` steps (fresh optimiser, cosine decay), batches seeded by ``phase``.

    ``forward`` and ``batch_transform`` as in :func:`train_epochs` (DDP wrapper, per-rank sharding).
    """
    distill = cfg.distill if distill is None else distill
    opt = make_optimizer(net, lr, cfg.momentum, cfg.weight_decay)
    stats = TrainStats()
    task = _add_task(progress, phase, steps)
    t0 = time.perf_counter()
    net.train()

    def stream() -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        step, cycle = 0, 0
        while step < steps:  # as many passes over the data as the steps need, each seeded by its index
            for xb, yb in _train_batches(data, cfg, phase, cycle):
                if step >= steps:
                    return
                yield step, xb, yb
                step += 1
            cycle += 1

    _step_loop(net, opt, stream(), sampler, lambda step: cosine_lr(step, steps, lr), stats, distill=distill,
               forward=forward, batch_transform=batch_transform, meter=meter, phase=phase,
               show=lambda loss: _advance(progress, task, f"loss {loss:.3f}"))  # fmt: skip
    _finish(progress, task)
    if progress is not None and task is not None:
        progress.remove_task(task)
    stats.seconds = time.perf_counter() - t0
    return stats


# ------------------------------------------------------------------------------------------------ BN calibration


def calibration_batches(data: Dataset, num_batches: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """The first ``num_batches`` batches of a fixed shuffled pass over the training images, without augmentation."""
    g = make_generator(seed, "calibration")
    out = []
    for xb, _ in data.batches("train", batch_size, shuffle=True, augment=False, generator=g):
        out.append(xb)
        if len(out) >= num_batches:
            break
    return out


def calibrate(
    net: DynamicNet,
    specs: Sequence[SubnetSpec],
    batches: Sequence[torch.Tensor],
    meter: ComputeMeter | None = None,
    progress: Progress | None = None,
) -> None:
    """Recompute every spec's BN statistics (stored under its name) on ``batches`` (see :func:`calibration_batches`)."""
    dev, cl = _device(net), wants_channels_last(net)
    prepared = [prepare_input(b, dev, cl) for b in batches]
    task = _add_task(progress, "calibrate BN", len(specs)) if len(specs) > 1 else None
    for spec in specs:
        net.calibrate_bn(spec, prepared)
        if meter is not None:
            meter.add_forward(sum(len(b) for b in prepared), spec.macs, "calibrate")
        _advance(progress, task)
    if task is not None and progress is not None:
        progress.remove_task(task)
