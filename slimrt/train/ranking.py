"""Importance of units (blocks of channels of one channel group) for the progressive search.

A ranking is a callable ``rank(net, spec, units, ctx) -> scores`` (like Torch-Pruning's importance): one score per
unit of the current sub-net ``spec``, **higher = more important = kept longer**. Units are given as positions in
each group's current channel order (kept channels are a prefix of that order).

``noise`` (trainable noise ranking). Every unit ``u`` gets a learnable noise scale ``alpha_u = exp(s_u)``. While the
sub-net runs (eval mode, its own BN statistics, weights frozen), the output of each layer carrying the unit's
channels (its BatchNorms, or the producing conv/linear when the group has no BN) is multiplied per sample and
channel by ``1 + alpha_u * eps`` with ``eps ~ N(0, 1)`` drawn every step. The scales are trained with Adam on::

    loss = CE(logits, y) - lambda * sum_u w_u * log(alpha_u),     w_u = MACs_u / sum_v MACs_v

where ``MACs_u`` is what removing unit ``u`` alone would save. The log reward pushes every ``s_u`` up at a constant
rate ``lambda * w_u``; the cross-entropy pushes back roughly in proportion to ``alpha_u^2 x`` (the unit's
sensitivity), so each scale settles where ``alpha_u^2 ~ w_u / sensitivity_u``: cheap-to-keep, sensitive units stay
quiet, expensive or useless ones get loud. The importance is ``-s_u``: units that tolerate the most noise go first.

``l1``: mean absolute weight of the unit's output filters (summed over the layers producing the group), divided by
the mean over the group's kept channels, so scores compare across layers. ``bn``: mean ``|gamma|`` over the
group's BatchNorms (network-slimming style, not normalised). ``random``: uniform random scores (seeded).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from slimrt.errors import ConfigError
from slimrt.schema import SubnetSpec
from slimrt.train.loops import ComputeMeter, make_generator, prepare_input, wants_channels_last

if TYPE_CHECKING:
    from rich.progress import Progress

    from slimrt.train.data import Dataset
    from slimrt.train.dynamic import DynamicNet

__all__ = ["Unit", "RankContext", "Ranking", "RANKINGS", "get_ranking", "unit_macs", "noise_rank", "l1_rank",
           "bn_rank", "random_rank"]  # fmt: skip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unit:
    """Channels ``[start, stop)`` (positions in the current order) of channel group ``group``."""

    group: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass
class RankContext:
    """What a ranking may use besides the network: data, knobs, a key for its random draws, accounting."""

    data: Dataset | None = None
    seed: int = 0
    key: str | int = 0
    noise_steps: int = 100
    noise_lr: float = 0.05
    noise_reward: float = 0.2
    noise_init: float = 0.05
    batch_size: int = 64
    meter: ComputeMeter | None = None
    progress: Progress | None = None
    unit_cost: torch.Tensor | None = None  # per-unit cost for the noise reward (default: MACs saved), e.g. ms saved
    alphas: torch.Tensor | None = None  # set by noise_rank: the trained scales (for inspection)


Ranking = Callable[["DynamicNet", SubnetSpec, list[Unit], RankContext], torch.Tensor]


def _check_units(net: DynamicNet, spec: SubnetSpec, units: list[Unit]) -> dict[str, int]:
    widths = net.widths(spec)
    for u in units:
        if not 0 <= u.start < u.stop <= widths[u.group]:
            raise ConfigError(f"unit {u} lies outside group {u.group!r}'s kept width {widths[u.group]}")
    return widths


def unit_macs(net: DynamicNet, spec: SubnetSpec, units: list[Unit]) -> torch.Tensor:
    """MACs saved by removing each unit alone from ``spec`` (its channels' share of the group, by size)."""
    widths = net.widths(spec)
    base = net.macs(spec)
    per_group: dict[str, float] = {}
    out = []
    for u in units:
        g = u.group
        if g not in per_group:
            w = widths[g]
            smaller = dict(spec.widths)
            smaller[g] = max(1, w - 1)
            per_group[g] = float(base - net.spec(smaller).macs) if w > 1 else 0.0
        out.append(per_group[g] * u.size)
    return torch.tensor(out, dtype=torch.float64)


# --------------------------------------------------------------------------------------------- channel positions


def _layers(net: DynamicNet) -> dict[str, Any]:
    # DynamicNet keeps its per-layer channel layouts privately; ranking reads them (read-only).
    return net._layers  # noqa: SLF001


def _unit_index(units: list[Unit]) -> dict[str, torch.Tensor]:
    """Per group: a tensor mapping each kept position to its unit's index (or -1 when no unit covers it)."""
    stops: dict[str, int] = {}
    for u in units:
        stops[u.group] = max(stops.get(u.group, 0), u.stop)
    index = {g: torch.full((n,), -1, dtype=torch.long) for g, n in stops.items()}
    for i, u in enumerate(units):
        index[u.group][u.start : u.stop] = i
    return index


def _output_unit_map(info: Any, widths: dict[str, int], index: dict[str, torch.Tensor], dummy: int) -> torch.Tensor:
    """For a layer under the sub-net: the unit index of each of its kept output channels (``dummy`` if none)."""
    parts = []
    for seg in info.out_layout.segments:
        k = min(widths[seg.group], seg.size)
        idx = index.get(seg.group)
        if idx is None:
            parts.append(torch.full((k,), dummy, dtype=torch.long))
        else:
            m = torch.full((k,), dummy, dtype=torch.long)
            n = min(k, idx.numel())
            m[:n] = torch.where(idx[:n] >= 0, idx[:n], torch.full_like(idx[:n], dummy))
            parts.append(m)
    out = torch.cat(parts)
    if info.out_layout.repeat > 1:
        out = out.repeat_interleave(info.out_layout.repeat)
    return out


def _injection_layers(net: DynamicNet, groups: set[str]) -> list[str]:
    """BatchNorms carrying the ranked groups, plus producing conv/linear layers of groups without a BatchNorm."""
    layers = _layers(net)
    with_bn = {s.group for i in layers.values() if i.kind == "bn" for s in i.out_layout.segments}
    names = []
    for name, info in layers.items():
        segs = {s.group for s in info.out_layout.segments}
        if info.kind == "bn" and segs & groups:
            names.append(name)
        elif info.kind in ("conv", "gconv", "linear") and (segs & groups) - with_bn:
            names.append(name)
    return names


# -------------------------------------------------------------------------------------------------------- rankings


def noise_rank(net: DynamicNet, spec: SubnetSpec, units: list[Unit], ctx: RankContext) -> torch.Tensor:
    """Trainable noise ranking (see the module docstring); returns ``-log(alpha)`` per unit."""
    if ctx.data is None:
        raise ConfigError("noise ranking needs training data")
    widths = _check_units(net, spec, units)
    if not units:
        return torch.zeros(0)
    index = _unit_index(units)
    dummy = len(units)
    names = _injection_layers(net, set(index))
    layers = _layers(net)
    maps = {n: _output_unit_map(layers[n], widths, index, dummy) for n in names}
    dev = next(net.parameters()).device
    cost = unit_macs(net, spec, units) if ctx.unit_cost is None else ctx.unit_cost.double()
    weight = (cost / cost.sum() if cost.sum() > 0 else torch.full_like(cost, 1.0 / len(units))).float().to(dev)
    log_alpha = torch.full((len(units),), math.log(ctx.noise_init), device=dev, requires_grad=True)
    opt = torch.optim.Adam([log_alpha], lr=ctx.noise_lr)
    gen = make_generator(ctx.seed, "noise-rank", ctx.key)
    eps_gen = torch.Generator(device=dev).manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
    state: dict[str, torch.Tensor] = {}

    def hook(name: str):
        umap = maps[name].to(dev)

        def fn(module, inputs, out):
            scale = state["alpha_ext"][umap]
            shape = (out.shape[0], out.shape[1]) + (1,) * (out.dim() - 2)
            eps = torch.randn(shape, generator=eps_gen, device=dev, dtype=out.dtype)
            return out * (1.0 + scale.view(1, -1, *([1] * (out.dim() - 2))) * eps)

        return fn

    was_training = net.training
    requires = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    handles = [layers[n].module.register_forward_hook(hook(n)) for n in names]
    cl = wants_channels_last(net)
    x_all, y_all = ctx.data.x_train, ctx.data.y_train
    task = ctx.progress.add_task("noise ranking", total=ctx.noise_steps, info="") if ctx.progress else None
    net.eval()
    try:
        with net.use(spec):
            for _ in range(ctx.noise_steps):
                idx = torch.randint(0, len(y_all), (ctx.batch_size,), generator=gen)
                xb = prepare_input(x_all[idx], dev, cl)
                yb = y_all[idx].to(dev)
                alpha = log_alpha.exp()
                state["alpha_ext"] = torch.cat([alpha, alpha.new_zeros(1)])
                loss = F.cross_entropy(net(xb), yb) - ctx.noise_reward * (weight * log_alpha).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    log_alpha.clamp_(min=math.log(1e-4), max=math.log(1e3))
                if ctx.meter is not None:
                    ctx.meter.add_forward(ctx.batch_size, 2 * spec.macs, "rank")
                if task is not None:
                    ctx.progress.update(task, advance=1)
    finally:
        for h in handles:
            h.remove()
        for p, r in zip(net.parameters(), requires, strict=True):
            p.requires_grad_(r)
        net.train(was_training)
        if task is not None:
            ctx.progress.remove_task(task)
    ctx.alphas = log_alpha.detach().exp().cpu()
    return -log_alpha.detach().cpu().double()


def _positions(info: Any, group: str) -> int | None:
    """Offset of ``group``'s channels in the layer's (full) output, or None when it does not produce them."""
    off = 0
    for seg in info.out_layout.segments:
        if seg.group == group:
            return off
        off += seg.size
    return None


def _per_channel(net: DynamicNet, spec: SubnetSpec, units: list[Unit], kinds: tuple[str, ...],
                 value: Callable[[Any], torch.Tensor]) -> dict[str, torch.Tensor]:  # fmt: skip
    """Per ranked group: mean over its layers of ``kinds`` of ``value(module)`` at the group's kept positions."""
    widths = net.widths(spec)
    out: dict[str, torch.Tensor] = {}
    for g in {u.group for u in units}:
        acc, n = None, 0
        for info in _layers(net).values():
            if info.kind not in kinds or info.out_layout.repeat != 1:
                continue
            off = _positions(info, g)
            if off is None:
                continue
            v = value(info.module).detach().float().cpu()[off : off + widths[g]]
            acc = v if acc is None else acc + v
            n += 1
        out[g] = acc / n if acc is not None else torch.zeros(widths[g])
    return out


def _unit_scores(units: list[Unit], per_channel: dict[str, torch.Tensor], normalise: bool) -> torch.Tensor:
    scores = []
    for u in units:
        ch = per_channel[u.group]
        s = ch[u.start : u.stop].mean()
        if normalise:
            s = s / ch.mean().clamp_min(1e-12)
        scores.append(float(s))
    return torch.tensor(scores, dtype=torch.float64)


def l1_rank(net: DynamicNet, spec: SubnetSpec, units: list[Unit], ctx: RankContext) -> torch.Tensor:
    """Mean |weight| of each unit's output filters, normalised by the group's mean (compares across layers)."""
    _check_units(net, spec, units)
    per = _per_channel(net, spec, units, ("conv", "dwconv", "gconv", "linear"),
                       lambda m: m.weight.abs().flatten(1).mean(1))  # fmt: skip
    return _unit_scores(units, per, normalise=True)


def bn_rank(net: DynamicNet, spec: SubnetSpec, units: list[Unit], ctx: RankContext) -> torch.Tensor:
    """Mean |gamma| of each unit's channels over the group's BatchNorms."""
    _check_units(net, spec, units)
    if not any(i.kind == "bn" for i in _layers(net).values()):
        raise ConfigError("bn ranking needs a network with BatchNorm layers; use --ranking noise or l1")
    per = _per_channel(net, spec, units, ("bn",), lambda m: m.weight.abs())
    return _unit_scores(units, per, normalise=False)


def random_rank(net: DynamicNet, spec: SubnetSpec, units: list[Unit], ctx: RankContext) -> torch.Tensor:
    """Uniform random scores (seeded by the context's seed and key)."""
    _check_units(net, spec, units)
    return torch.rand(len(units), generator=make_generator(ctx.seed, "random-rank", ctx.key), dtype=torch.float64)


RANKINGS: dict[str, Ranking] = {"noise": noise_rank, "l1": l1_rank, "bn": bn_rank, "random": random_rank}


def get_ranking(name: str) -> Ranking:
    """The ranking called ``name`` (``noise``, ``l1``, ``bn``, ``random``)."""
    try:
        return RANKINGS[name]
    except KeyError:
        raise ConfigError(f"unknown ranking {name!r}; choose one of {', '.join(RANKINGS)}") from None
