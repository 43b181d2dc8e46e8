"""Supernet warm start for the progressive search (``supernet_epochs``, AutoSlim-style).

Before the search, the pre-trained network is trained for a few epochs as a *non-uniform* slimmable supernet, so
candidates are later judged on weights that already work at many widths:

1. Every prunable group's channels are put in importance order (mean |weight| of the filters producing them,
   :func:`importance_order`), so a prefix keeps the important channels and every sub-net stays nested.
2. Each step trains, jointly (sandwich rule), the full network, the smallest sub-net (every group at its minimum
   width) and ``sampled_subnets`` random sub-nets whose groups' widths are drawn *independently* on each group's
   unit grid (:func:`supernet_sampler`); with ``distill`` the full network's soft outputs teach the others
   (in-place distillation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from slimrt.train.loops import Sampler, make_generator, train_epochs
from slimrt.train.ranking import Unit, l1_rank

if TYPE_CHECKING:
    from rich.progress import Progress

    from slimrt.schema import SubnetSpec
    from slimrt.train.config import SearchConfig
    from slimrt.train.data import Dataset
    from slimrt.train.dynamic import DynamicNet
    from slimrt.train.loops import ComputeMeter, TrainStats

__all__ = ["width_grid", "supernet_sampler", "importance_order", "supernet_warm_start"]


def width_grid(net: DynamicNet, cfg: SearchConfig) -> dict[str, list[int]]:
    """Widths each prunable group may take: multiples of its unit from its minimum width up to full."""
    from slimrt.train.methods.progressive import min_keep, unit_size

    out = {}
    for g in net.prunable_groups:
        u = unit_size(g.channels, cfg.group_size, cfg.min_units)
        lo = min_keep(g.channels, u, cfg.min_width)
        out[g.name] = sorted({*range(lo, g.channels + 1, u), g.channels})
    return out


def supernet_sampler(net: DynamicNet, cfg: SearchConfig, phase: str = "supernet") -> Sampler:
    """Full network, ``cfg.sampled_subnets`` random non-uniform sub-nets (each group's width uniform on its grid,
    independently, seeded by step) and the smallest sub-net, in that order (the first is the distillation teacher)."""
    grid = width_grid(net, cfg)
    full = net.full_spec("full")
    small = net.spec({g: w[0] for g, w in grid.items()}, name="smallest")

    def sample(step: int) -> list[SubnetSpec]:
        gen = make_generator(cfg.seed, phase, step)
        specs = [full]
        for k in range(cfg.sampled_subnets):
            widths = {g: w[int(torch.randint(0, len(w), (1,), generator=gen))] for g, w in grid.items()}
            specs.append(net.spec(widths, name=f"random{k}"))
        return [*specs, small]

    return sample


@torch.no_grad()
def importance_order(net: DynamicNet) -> dict[str, list[int]]:
    """Per prunable group, channel positions sorted by mean |weight| of their producing filters (most important
    first, stable); applied with ``net.reorder`` it keeps the network's function."""
    full = net.full_spec()
    units = [Unit(g.name, c, c + 1) for g in net.prunable_groups for c in range(g.channels)]
    scores = l1_rank(net, full, units, None)  # type: ignore[arg-type]  # l1 does not read the context
    order: dict[str, list[int]] = {}
    i = 0
    for g in net.prunable_groups:
        s = scores[i : i + g.channels]
        i += g.channels
        order[g.name] = sorted(range(g.channels), key=lambda c, s=s: (-float(s[c]), c))
    return order


def supernet_warm_start(net: DynamicNet, data: Dataset, cfg: SearchConfig, progress: Progress | None = None,
                        meter: ComputeMeter | None = None, *, start_epoch: int = 0,
                        optimizer_state: dict | None = None, **kwargs) -> TrainStats:  # fmt: skip
    """Reorder channels by importance, then train ``cfg.supernet_epochs`` epochs with :func:`supernet_sampler`
    (learning rate ``cfg.supernet_lr``, in-place distillation when ``cfg.distill``). ``kwargs`` go to
    :func:`~slimrt.train.loops.train_epochs` (forward, batch_transform, on_epoch_end).

    Resume after epoch ``start_epoch`` with the checkpointed weights (already reordered: the reorder is not redone)
    and ``optimizer_state``; the run then continues exactly as an uninterrupted one."""
    from slimrt.train.loops import make_optimizer

    if start_epoch == 0:
        net.reorder(importance_order(net))
    opt = make_optimizer(net, cfg.supernet_lr, cfg.momentum, cfg.weight_decay)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    return train_epochs(net, data, supernet_sampler(net, cfg), cfg.supernet_epochs, cfg, progress, meter,
                        lr=cfg.supernet_lr, phase="supernet", optimizer=opt, start_epoch=start_epoch,
                        **kwargs)  # fmt: skip
