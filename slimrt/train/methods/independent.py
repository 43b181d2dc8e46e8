"""Independent baseline: each sub-net architecture trained alone, from scratch.

Each given spec (normally the final progressive sub-nets) is extracted from the network as a plain, physically
smaller model, re-initialised (seeded by the run seed and the sub-net's name) and trained with plain
cross-entropy. Compute is counted with the same :class:`~slimrt.train.loops.ComputeMeter` unit as every other
method (3 x MACs per trained image).

Budget rule: with ``budget_macs`` every sub-net gets the *same number of steps*, chosen so that the K trainings
together spend the budget (``steps = ceil(budget / (3 x batch x sum of the K sub-nets' MACs))``); so a small
sub-net costs less but is not trained longer. Without a budget each sub-net trains ``epochs`` epochs (default
``cfg.pretrain_epochs``: the recipe of the full network's pre-training), one sub-net at a time through
:func:`train_twin_epochs`, which can also resume a twin from an epoch checkpoint (the standard accuracy benchmark).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from slimrt.errors import ConfigError
from slimrt.models.registry import init_weights
from slimrt.schema import SubnetSpec
from slimrt.train.loops import (
    ComputeMeter,
    TrainStats,
    derive_seed,
    fixed_sampler,
    make_optimizer,
    train_epochs,
    train_steps,
)
from slimrt.train.methods.base import (
    BaselineReport,
    BatchTransform,
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

__all__ = [
    "fresh_subnet",
    "independent_steps",
    "twin_seed",
    "twin_phase",
    "train_twin_epochs",
    "evaluate_twin",
    "train_independent",
    "Independent",
]

log = logging.getLogger(__name__)


def fresh_subnet(net: DynamicNet, spec: SubnetSpec, seed: int, channels_last: bool = False) -> DynamicNet:
    """A freshly initialised, physically smaller network with ``spec``'s architecture, wrapped as a DynamicNet.

    Its full MACs and params equal ``spec.macs`` / ``spec.params``.
    """
    from slimrt.train.dynamic import DynamicNet

    dev = next(net.parameters()).device
    plain = net.extract(spec).cpu()
    torch.manual_seed(seed)
    init_weights(plain)
    for m in plain.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    sub = DynamicNet(plain, torch.zeros(1, *net.input_shape))
    if sub.macs() != spec.macs:
        raise ConfigError(f"extracted {spec.name} has {sub.macs()} MACs but the spec says {spec.macs}")
    sub = sub.to(dev)
    if channels_last:
        sub = sub.to(memory_format=torch.channels_last)
    return sub


def independent_steps(specs: Sequence[SubnetSpec], batch_size: int, budget_macs: int) -> int:
    """Steps per sub-net so that the K independent trainings together spend ``budget_macs`` training MACs."""
    per_step = 3 * batch_size * sum(s.macs for s in specs)
    if per_step <= 0:
        raise ConfigError("sub-nets with zero MACs cannot be trained to a MACs budget")
    return max(1, math.ceil(budget_macs / per_step))


def twin_seed(cfg: SearchConfig, spec: SubnetSpec) -> int:
    """The initialisation seed of ``spec``'s twin: the run seed and the sub-net's name."""
    return derive_seed(cfg.seed, "independent", spec.name)


def twin_phase(spec: SubnetSpec) -> str:
    """The training phase of ``spec``'s twin (names its compute and seeds its batch order)."""
    return f"independent-{spec.name}"


def train_twin_epochs(
    cfg: SearchConfig,
    data: Dataset,
    net: DynamicNet,
    spec: SubnetSpec,
    progress: Progress | None = None,
    meter: ComputeMeter | None = None,
    *,
    epochs: int | None = None,
    start_epoch: int = 0,
    model_state: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict | None = None,
    on_epoch_end: Callable[[int, DynamicNet, torch.optim.Optimizer], None] | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    batch_transform: BatchTransform | None = None,
) -> tuple[DynamicNet, TrainStats]:
    """Train ``spec``'s architecture alone from scratch: ``epochs`` (default ``cfg.pretrain_epochs``) epochs of the
    pre-training recipe (``cfg.lr``, cosine with ``cfg.warmup_epochs`` of warm-up, no distillation).

    Resume a twin by passing ``start_epoch`` with the ``model_state`` (of ``sub.model``) and ``optimizer_state``
    saved by ``on_epoch_end(epoch, sub, optimizer)`` after that many epochs: the schedule and the batch order
    (seeded by :func:`twin_phase` and the epoch) continue where they stopped.

    Returns:
        The trained twin (a :class:`DynamicNet` of the extracted architecture) and the training statistics.
    """
    n_epochs = cfg.pretrain_epochs if epochs is None else int(epochs)
    sub = fresh_subnet(net, spec, twin_seed(cfg, spec), cfg.use_channels_last())
    if model_state is not None:
        sub.model.load_state_dict(model_state)
    opt = make_optimizer(sub, cfg.lr, cfg.momentum, cfg.weight_decay)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    hook = None if on_epoch_end is None else (lambda epoch, o: on_epoch_end(epoch, sub, o))
    stats = train_epochs(sub, data, fixed_sampler([sub.full_spec(spec.name)]), n_epochs, cfg, progress, meter,
                         lr=cfg.lr, warmup_epochs=cfg.warmup_epochs, phase=twin_phase(spec), distill=False,
                         optimizer=opt, start_epoch=start_epoch, on_epoch_end=hook,
                         forward=wrap(sub) if wrap is not None else None, batch_transform=batch_transform)  # fmt: skip
    return sub, stats


def evaluate_twin(
    sub: DynamicNet, spec: SubnetSpec, data: Dataset, cfg: SearchConfig, meter: ComputeMeter | None = None
) -> SubnetSpec:
    """``spec`` with the val/test accuracy of its trained twin ``sub`` (its own BN statistics, no calibration)."""
    [scored] = evaluate_specs(sub, [sub.full_spec(spec.name)], data, cfg, meter, calibrate_bn=False)
    return spec.with_accuracy(val=scored.val_accuracy, test=scored.test_accuracy)


def train_independent(
    cfg: SearchConfig,
    data: Dataset,
    net: DynamicNet,
    specs: Sequence[SubnetSpec],
    progress: Progress | None = None,
    meter: ComputeMeter | None = None,
    *,
    budget_macs: int | None = None,
    epochs: int | None = None,
    on_trained: Callable[[SubnetSpec, DynamicNet], None] | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    batch_transform: BatchTransform | None = None,
) -> tuple[list[SubnetSpec], BaselineReport]:
    """Train every spec alone from scratch and record its val/test accuracy.

    Args:
        net: a network of the same architecture (only its structure is used; weights are re-initialised).
        specs: the sub-net architectures (names, widths) to train.
        budget_macs: total training MACs for all sub-nets together (see the module docstring for the split).
        epochs: epochs per sub-net when no budget is given (default ``cfg.pretrain_epochs``).
        on_trained: called with ``(spec, trained network)`` after each sub-net, e.g. to keep the weights.
        wrap: wraps each fresh sub-net for training forwards (DistributedDataParallel under torchrun).
        batch_transform: per-batch transform (sharding across ranks); epoch-based runs only.

    Returns:
        The specs with the independently trained twins' accuracies, and a :class:`BaselineReport`.
    """
    if not specs:
        raise ConfigError("train_independent needs at least one sub-net spec")
    meter = meter if meter is not None else ComputeMeter()
    if budget_macs is not None and (wrap is not None or batch_transform is not None):
        raise ConfigError("a MACs budget is only supported single-process")
    n_epochs = cfg.pretrain_epochs if epochs is None else int(epochs)
    steps = independent_steps(specs, cfg.batch_size, budget_macs) if budget_macs is not None else None
    report = BaselineReport(method="independent", budget_macs=budget_macs, distill=False)
    before_other = meter.other_macs
    t_all = time.perf_counter()
    out: list[SubnetSpec] = []
    for spec in specs:
        phase = twin_phase(spec)
        before = meter.by_phase.get(phase, 0)
        t0 = time.perf_counter()
        if steps is not None:
            sub = fresh_subnet(net, spec, twin_seed(cfg, spec), cfg.use_channels_last())
            stats = train_steps(sub, data, fixed_sampler([sub.full_spec(spec.name)]), steps, cfg, progress, meter,
                                lr=cfg.lr, phase=phase, distill=False)  # fmt: skip
        else:
            sub, stats = train_twin_epochs(cfg, data, net, spec, progress, meter, epochs=n_epochs, wrap=wrap,
                                           batch_transform=batch_transform)  # fmt: skip
        seconds = time.perf_counter() - t0
        scored = evaluate_twin(sub, spec, data, cfg, meter)
        val, test = scored.val_accuracy, scored.test_accuracy
        out.append(scored)
        spent = meter.by_phase.get(phase, 0) - before
        report.steps += stats.steps
        report.train_macs += spent
        report.per_subnet.append({"name": spec.name, "macs": spec.macs, "steps": stats.steps, "train_macs": spent,
                                  "seconds": seconds, "val_accuracy": val, "test_accuracy": test})  # fmt: skip
        log.info("independent %s: %d steps, test %.2f%%", spec.name, stats.steps, test)
        if on_trained is not None:
            on_trained(spec, sub)
    report.seconds = time.perf_counter() - t_all
    report.train_seconds = sum(p["seconds"] for p in report.per_subnet)
    report.other_macs = meter.other_macs - before_other
    n_img = len(data.y_train)
    report.epochs = report.steps * cfg.batch_size / max(1, n_img) / len(specs)
    if steps is None:
        report.notes.append(f"each sub-net trained {n_epochs} epochs from scratch")
    else:
        report.notes.append(f"each sub-net trained {steps} steps from scratch (equal steps; budget split by MACs)")
    return out, report


@register_method
class Independent(TrainingMethod):
    """``--method independent``: one sub-net per MACs target (uniform widths), each trained alone from scratch."""

    name = "independent"
    pretrain = False

    def run(self, ctx: MethodContext) -> tuple[list[SubnetSpec], MethodReport]:
        targets = default_targets(ctx.net, ctx.cfg)
        specs = [match_macs(ctx.net, t, name=f"indep{i}")[0] for i, t in enumerate(targets)]
        return train_independent(ctx.cfg, ctx.data, ctx.net, specs, ctx.progress, ctx.meter, wrap=ctx.ddp.wrap,
                                 batch_transform=ctx.ddp.batch_transform)  # fmt: skip
