"""Latency tables on the training side: the parts of a :class:`DynamicNet` to measure, and predictions from a table.

:func:`layer_parts` lists every conv and linear layer of the network as a :class:`~slimrt.bench.layers.PartShape`
(kernel, stride, input size, full widths) with the unit grid of the channel groups it reads and writes, and a
:class:`~slimrt.schema.LatencyLayer` naming the part and the groups. :class:`LatencyPredictor` answers what the
search asks: a sub-net's predicted milliseconds and what removing each unit would save.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from slimrt.bench.layers import PartShape, unit_grid
from slimrt.errors import ConfigError
from slimrt.schema import LatencyLayer, LatencyTable, SubnetSpec

if TYPE_CHECKING:
    from slimrt.train.dynamic import DynamicNet
    from slimrt.train.ranking import Unit

__all__ = ["layer_parts", "load_latency_table", "LatencyPredictor"]


def _unit(net: DynamicNet, group: str, group_size: int, min_units: int) -> int:
    from slimrt.train.methods.progressive import unit_size

    g = net.group(group)
    return unit_size(g.channels, group_size, min_units) if g.prunable else g.channels


def _grid(net: DynamicNet, segments: list[tuple[str, int]], group_size: int, min_units: int, repeat: int = 1
          ) -> tuple[int, ...]:  # fmt: skip
    full = sum(c for _, c in segments)
    units = [_unit(net, g, group_size, min_units) for g, c in segments if net.group(g).prunable]
    if not units:
        return (full * repeat,)
    return tuple(v * repeat for v in unit_grid(full, min(units)))


def layer_parts(net: DynamicNet, group_size: int = 8, min_units: int = 4
                ) -> tuple[list[PartShape], list[LatencyLayer], dict[str, int]]:  # fmt: skip
    """The distinct parts of ``net`` with their grids, its layers, and the full channels of the groups they use."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, info in net._layers.items():
        if info.kind in ("conv", "dwconv", "gconv"):
            handles.append(info.module.register_forward_pre_hook(
                lambda m, a, name=name: shapes.__setitem__(name, tuple(a[0].shape))))  # fmt: skip
    was = net.training
    net.eval()
    try:
        with torch.no_grad(), net.use(None):
            p = next(net.parameters())
            net(torch.zeros(1, *net.input_shape, device=p.device, dtype=p.dtype))
    finally:
        for h in handles:
            h.remove()
        net.train(was)
    parts: dict[str, PartShape] = {}
    layers: list[LatencyLayer] = []
    groups: dict[str, int] = {}
    for name, info in net._layers.items():
        if info.kind == "bn":
            continue
        if info.kind == "gconv":
            raise ConfigError(f"latency tables do not support grouped (non-depthwise) convs yet: layer {name!r}")
        ins = [(s.group, s.size) for s in info.in_layout.segments]
        outs = [(s.group, s.size) for s in info.out_layout.segments]
        for g, c in ins + outs:
            groups[g] = c
        mod = info.module
        if info.kind == "linear":
            rep = info.in_layout.repeat
            part = PartShape("linear", mod.in_features, mod.out_features,
                             in_grid=_grid(net, ins, group_size, min_units, rep),
                             out_grid=_grid(net, outs, group_size, min_units))  # fmt: skip
        else:
            rep = 1
            dw = info.kind == "dwconv"
            og = _grid(net, outs, group_size, min_units)
            part = PartShape("conv", mod.in_channels, mod.out_channels, in_hw=tuple(shapes[name][2:]),
                             kernel=tuple(mod.kernel_size), stride=tuple(mod.stride), padding=tuple(mod.padding),
                             depthwise=dw, in_grid=og if dw else _grid(net, ins, group_size, min_units),
                             out_grid=og)  # fmt: skip
        key = f"{part.key}-g{len(part.in_grid)}x{len(part.out_grid)}"
        if key in parts and parts[key] != part:
            raise AssertionError(f"two different parts share key {key}")
        parts[key] = part
        layers.append(LatencyLayer(name=name, part=key, inputs=ins, outputs=outs, in_repeat=rep, depthwise=dw
                                   if info.kind != "linear" else False))  # fmt: skip
    return [dataclasses.replace(p, name=k) for k, p in parts.items()], layers, groups


def load_latency_table(path: str | Path) -> LatencyTable:
    """Read a latency table written by ``slimrt latency-table``."""
    p = Path(path)
    try:
        return LatencyTable.model_validate(json.loads(p.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"latency table {p} not found; write one with `slimrt latency-table`") from None
    except (ValueError, json.JSONDecodeError) as e:
        raise ConfigError(f"{p} is not a latency table: {str(e).splitlines()[0]}") from None


class LatencyPredictor:
    """Predicted latency of ``net``'s sub-nets from ``table`` (checked to describe this network)."""

    def __init__(self, net: DynamicNet, table: LatencyTable) -> None:
        if list(table.input_shape) != list(net.input_shape):
            raise ConfigError(f"latency table was measured for input {table.input_shape}, the network takes "
                              f"{list(net.input_shape)}; measure a table for this input size")  # fmt: skip
        known = set(net._layers)
        for layer in table.layers:
            if layer.name not in known:
                raise ConfigError(f"latency table layer {layer.name!r} is not in this network; measure a table for it")
        for g, c in table.groups.items():
            if net.group(g).channels != c:
                raise ConfigError(f"latency table says group {g!r} has {c} channels, the network "
                                  f"{net.group(g).channels}; measure a table for this network")  # fmt: skip
        self.net = net
        self.table = table
        self.full_ms = self.ms(None)

    def ms(self, spec: SubnetSpec | dict[str, int] | None) -> float:
        widths = spec if isinstance(spec, dict) else self.net.widths(spec)
        return self.table.predict_ms(widths)

    def unit_ms(self, spec: SubnetSpec, units: list[Unit]) -> torch.Tensor:
        """Predicted ms saved by removing each unit alone from ``spec`` (clamped at a tiny positive value)."""
        widths = self.net.widths(spec)
        base = self.ms(widths)
        cache: dict[tuple[str, int], float] = {}
        out = []
        for u in units:
            k = (u.group, u.size)
            if k not in cache:
                smaller = dict(widths)
                smaller[u.group] = max(1, widths[u.group] - u.size)
                cache[k] = base - self.ms(smaller)
            out.append(cache[k])
        return torch.tensor(out, dtype=torch.float64).clamp_min(1e-6)

