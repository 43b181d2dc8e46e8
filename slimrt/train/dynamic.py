"""The dynamic network: one set of weights, many nested sub-nets selected by kept channels per channel group.

Parameterised layers (Conv2d, BatchNorm, Linear) of the wrapped model are switched in place to dynamic
subclasses that slice their weights to the active sub-net; every other op runs unchanged, except a
``torch.split`` / ``chunk`` along channels: the model's class is then switched to one whose ``forward`` is the
torch.fx trace with each such call replaced by a :class:`~slimrt.train.graph.ChannelSplit` module that splits at
the active sub-net's kept sizes (so, in a model with such splits, Python branches of the forward, e.g. on
``self.training``, are fixed as they were when traced). Kept channels are a prefix of each group's current order,
so a sub-net's weights are ``[:k]`` slices of the full ones.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Iterable, Iterator

import torch
from torch import fx, nn

from slimrt.errors import ConfigError
from slimrt.schema import SubnetSpec
from slimrt.train.dynamic_layers import _DYN_CLASS, Index, _take
from slimrt.train.graph import ChannelGroup, ChannelSplit, LayerInfo, Layout, SplitInfo, analyze

__all__ = ["DynamicNet"]

log = logging.getLogger(__name__)


def _spec_key(spec: SubnetSpec) -> tuple:
    return spec.name, tuple(sorted(spec.widths.items()))


class DynamicNet(nn.Module):
    """A network whose nested sub-nets are chosen by kept channels per channel group.

    Args:
        model: the full network (modified in place: its conv/BN/linear layers become width-aware).
        example_input: a batch of one example input, used to trace shapes.
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor) -> None:
        super().__init__()
        analysis, gm = analyze(model, example_input)
        self._splits: dict[str, SplitInfo] = {}
        if analysis.splits:
            self._install_splits(model, gm, analysis.splits)
        self.model = model
        self.input_shape: tuple[int, ...] = tuple(example_input.shape[1:])
        self.groups: list[ChannelGroup] = analysis.groups
        self._group_by_name = {g.name: g for g in self.groups}
        self._layers: dict[str, LayerInfo] = analysis.layers
        self._plain_cls: dict[str, type] = {}
        for name, info in self._layers.items():
            mod = info.module
            cls = type(mod)
            if cls not in _DYN_CLASS:
                raise ConfigError(f"layer {name!r} of type {cls.__name__} is not supported by DynamicNet")
            self._plain_cls[name] = cls
            mod.__class__ = _DYN_CLASS[cls]
        tracked = {id(p) for info in self._layers.values() for p in info.module.parameters(recurse=False)}
        self._other_params = sum(p.numel() for p in model.parameters() if id(p) not in tracked)
        self.channel_order: dict[str, list[int]] = {g.name: list(range(g.channels)) for g in self.groups}
        self.bn_stats: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
        self.active: SubnetSpec | None = None
        self._index_cache: dict[tuple, dict[str, tuple]] = {}

    def _install_splits(self, model: nn.Module, gm: fx.GraphModule, splits: dict[str, SplitInfo]) -> None:
        """Replace each channel split of the traced graph by a :class:`ChannelSplit` module and run that graph."""
        nodes = {n.name: n for n in gm.graph.nodes}
        for i, (name, info) in enumerate(splits.items()):
            attr = f"slimrt_split{i}"
            while hasattr(model, attr):
                attr += "_"
            mod = ChannelSplit([p.channels for p in info.pieces], info.dim)
            model.add_module(attr, mod)
            gm.add_submodule(attr, mod)
            node = nodes[name]
            with gm.graph.inserting_before(node):
                new = gm.graph.call_module(attr, (node.args[0],))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            self._splits[attr] = info
        gm.recompile()
        cls = type(model)
        model.__class__ = type(cls.__name__, (cls,), {"forward": type(gm).forward, "__module__": cls.__module__})

    def _split_sizes(self, widths: dict[str, int]) -> dict[str, list[int]]:
        return {attr: [self._count(self._idx(p, widths), p.channels) for p in info.pieces]
                for attr, info in self._splits.items()}

    # ----------------------------------------------------------------- groups and specs
    @property
    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def group(self, name: str) -> ChannelGroup:
        try:
            return self._group_by_name[name]
        except KeyError:
            raise ConfigError(f"unknown channel group {name!r}; groups are {list(self._group_by_name)}") from None

    def widths(self, spec: SubnetSpec | None) -> dict[str, int]:
        """Kept channels of every group under ``spec`` (None = full)."""
        full = {g.name: g.channels for g in self.groups}
        if spec is not None:
            full.update(spec.widths)
        return full

    def spec(self, widths: dict[str, int] | None = None, name: str = "full") -> SubnetSpec:
        """Build a validated :class:`SubnetSpec`; groups not named stay full, MACs and params filled in."""
        widths = dict(widths or {})
        for g, k in widths.items():
            grp = self.group(g)
            k = int(k)
            if not 1 <= k <= grp.channels:
                raise ConfigError(f"group {g!r} has {grp.channels} channels; cannot keep {k}")
            if not grp.prunable and k != grp.channels:
                raise ConfigError(f"group {g!r} is fixed (network input/output or grouped conv); cannot keep {k}")
            widths[g] = k
        full = {g.name: g.channels for g in self.groups if g.prunable}
        full.update({g: k for g, k in widths.items() if self.group(g).prunable})
        w = self.widths(None) | full
        return SubnetSpec(name=name, widths=full, macs=self._macs(w), params=self._params(w))

    def full_spec(self, name: str = "full") -> SubnetSpec:
        return self.spec({}, name=name)

    def uniform_spec(self, ratio: float, name: str, round_to: int = 1) -> SubnetSpec:
        """Every prunable group keeps ``ceil(ratio * C)`` channels, rounded up to a multiple of ``round_to``."""
        if not 0 < ratio <= 1:
            raise ConfigError(f"width ratio must be in (0, 1], got {ratio}")
        widths = {}
        for g in self.prunable_groups:
            k = max(1, math.ceil(ratio * g.channels - 1e-9))
            k = min(g.channels, round_to * math.ceil(k / round_to))
            widths[g.name] = k
        return self.spec(widths, name=name)

    # ----------------------------------------------------------------- counting
    def _idx(self, layout: Layout | None, widths: dict[str, int]) -> Index:
        """Positions of the kept channels (or features) of ``layout``: None (all), int prefix, or a tensor."""
        if layout is None:
            return None
        kept = [min(widths[s.group], s.size) for s in layout.segments]
        if all(k == s.size for k, s in zip(kept, layout.segments, strict=True)):
            return None
        # A prefix when every segment but the last partially-kept one is full and nothing follows it.
        prefix = True
        seen_partial = False
        for k, s in zip(kept, layout.segments, strict=True):
            if seen_partial and k > 0:
                prefix = False
            if k < s.size:
                seen_partial = True
        r = layout.repeat
        if prefix:
            return sum(kept) * r
        pos, off = [], 0
        for k, s in zip(kept, layout.segments, strict=True):
            pos.extend(range(off, off + k))
            off += s.size
        ch = torch.tensor(pos, dtype=torch.long)
        if r == 1:
            return ch
        return (ch[:, None] * r + torch.arange(r)[None, :]).reshape(-1)

    @staticmethod
    def _count(idx: Index, full: int) -> int:
        if idx is None:
            return full
        return idx if isinstance(idx, int) else int(idx.numel())

    def _layer_counts(self, info: LayerInfo, widths: dict[str, int]) -> tuple[int, int]:
        mod = info.module
        n_out = self._count(self._idx(info.out_layout, widths), info.out_layout.channels * info.out_layout.repeat)
        if info.kind == "bn":
            return 0, (2 * n_out if mod.affine else 0)
        bias = n_out if getattr(mod, "bias", None) is not None else 0
        if info.kind == "linear":
            n_in = self._count(self._idx(info.in_layout, widths), mod.in_features)
            return n_in * n_out, n_in * n_out + bias
        kh, kw = mod.kernel_size
        if info.kind == "dwconv":
            w = n_out * kh * kw
        else:
            n_in = self._count(self._idx(info.in_layout, widths), mod.in_channels)
            w = n_out * (n_in // mod.groups) * kh * kw
        return w * info.out_positions, w + bias

    def _macs(self, widths: dict[str, int]) -> int:
        return sum(self._layer_counts(i, widths)[0] for i in self._layers.values())

    def _params(self, widths: dict[str, int]) -> int:
        return sum(self._layer_counts(i, widths)[1] for i in self._layers.values()) + self._other_params

    def macs(self, spec: SubnetSpec | None = None) -> int:
        """Multiply-accumulates of one forward at batch 1 (conv and linear layers)."""
        return self._macs(self.widths(spec))

    def params(self, spec: SubnetSpec | None = None) -> int:
        """Parameters of the sub-net (what its extracted module holds)."""
        return self._params(self.widths(spec))

    # ----------------------------------------------------------------- running a sub-net
    def _indices(self, spec: SubnetSpec) -> dict[str, tuple]:
        key = _spec_key(spec)
        cached = self._index_cache.get(key)
        if cached is not None:
            return cached
        widths = self.widths(spec)
        for g in spec.widths:
            self.group(g)
        out: dict[str, tuple] = {}
        for name, info in self._layers.items():
            o = self._idx(info.out_layout, widths)
            i = self._idx(info.in_layout, widths)
            if info.kind == "dwconv":
                out[name] = (o, None, self._count(o, info.module.out_channels))
            elif info.kind in ("conv", "gconv"):
                out[name] = (o, i, info.module.groups)
            elif info.kind == "linear":
                out[name] = (o, i)
            else:
                out[name] = (o,)
        if len(self._index_cache) > 256:
            self._index_cache.clear()
        self._index_cache[key] = out
        return out

    def _apply(self, fn, *args, **kwargs):
        # Cached index tensors live on the old device: drop them when the module moves.
        self._index_cache = {}
        return super()._apply(fn, *args, **kwargs)

    def _set_active(self, spec: SubnetSpec | None) -> None:
        self.active = spec
        is_full = spec is None or all(w == self.group(g).channels for g, w in spec.widths.items())
        sizes = self._split_sizes(self.widths(None if is_full else spec))
        for attr in self._splits:
            getattr(self.model, attr).active = None if is_full else sizes[attr]
        if is_full and (spec is None or spec.name not in self.bn_stats):
            for info in self._layers.values():
                info.module._slim = None
            return
        idx = self._indices(spec)
        stats = self.bn_stats.get(spec.name, {})
        for name, info in self._layers.items():
            if info.kind == "bn":
                info.module._slim = (idx[name][0], is_full, stats.get(name))
            else:
                info.module._slim = idx[name]

    @contextlib.contextmanager
    def use(self, spec: SubnetSpec | None) -> Iterator[DynamicNet]:
        """Run the sub-net ``spec`` inside the block (None = full network); restores the previous one after."""
        prev = self.active
        self._set_active(spec)
        try:
            yield self
        finally:
            self._set_active(prev)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ----------------------------------------------------------------- BatchNorm statistics
    @torch.no_grad()
    def calibrate_bn(
        self,
        spec: SubnetSpec,
        batches: Iterable[torch.Tensor | tuple | list],
        max_batches: int | None = None,
    ) -> int:
        """Recompute BN running statistics for ``spec`` (cumulative average over ``batches``), stored under its name.

        BN layers run in train mode without gradients; the shared statistics are left untouched.

        Returns:
            The number of batches used.
        """
        was_training = self.training
        self.eval()
        bns = {n: i for n, i in self._layers.items() if i.kind == "bn"}
        self.bn_stats.pop(spec.name, None)
        with self.use(spec):
            idx = self._indices(spec)
            for name, info in bns.items():
                m = info.module
                n = self._count(idx[name][0], m.num_features)
                dev = m.weight.device if m.weight is not None else m.running_mean.device
                m._calib = {
                    "mean": torch.zeros(n, device=dev),
                    "var": torch.ones(n, device=dev),
                    "count": 0,
                }
            used = 0
            try:
                dev = next(self.parameters()).device
                for batch in batches:
                    if max_batches is not None and used >= max_batches:
                        break
                    x = batch[0] if isinstance(batch, (tuple, list)) else batch
                    self.model(x.to(dev))
                    used += 1
            finally:
                calib = {name: info.module._calib for name, info in bns.items()}
                for info in bns.values():
                    info.module._calib = None
        if used == 0:
            raise ConfigError("calibrate_bn got no batches")
        self.bn_stats[spec.name] = {n: {"mean": c["mean"].clone(), "var": c["var"].clone()} for n, c in calib.items()}
        self.train(was_training)
        if self.active is not None and self.active.name == spec.name:
            self._set_active(self.active)
        return used

    def has_bn_stats(self, name: str) -> bool:
        return name in self.bn_stats

    def load_extra_state(
        self,
        channel_order: dict[str, list[int]] | None = None,
        bn_stats: dict[str, dict[str, dict[str, torch.Tensor]]] | None = None,
    ) -> None:
        """Restore channel order and per-sub-net BN statistics (from a checkpoint)."""
        if channel_order is not None:
            for g, order in channel_order.items():
                if len(order) != self.group(g).channels:
                    raise ConfigError(f"channel order of group {g!r} has {len(order)} entries, expected channels")
            self.channel_order = {g: list(map(int, o)) for g, o in channel_order.items()}
        if bn_stats is not None:
            self.bn_stats = {s: {m: dict(v) for m, v in per.items()} for s, per in bn_stats.items()}
        self._set_active(self.active)

    # ----------------------------------------------------------------- reordering
    @torch.no_grad()
    def reorder(self, order: dict[str, torch.Tensor | list[int]]) -> None:
        """Physically permute each named group's channels: new position i holds old position ``order[g][i]``.

        The network's function is unchanged. Stored per-sub-net BN statistics are permuted along when the
        permutation keeps each sub-net's kept channels within its prefix, and dropped (with a warning) otherwise.
        """
        perms: dict[str, torch.Tensor] = {}
        for g, o in order.items():
            grp = self.group(g)
            p = torch.as_tensor(o, dtype=torch.long).flatten()
            if p.numel() != grp.channels or not torch.equal(torch.sort(p).values, torch.arange(grp.channels)):
                raise ConfigError(f"order for group {g!r} must be a permutation of range({grp.channels})")
            if not torch.equal(p, torch.arange(grp.channels)):
                perms[g] = p
        if not perms:
            return

        def full_perm(layout: Layout) -> torch.Tensor | None:
            parts, off, changed = [], 0, False
            for s in layout.segments:
                if s.group in perms:
                    parts.append(perms[s.group] + off)
                    changed = True
                else:
                    parts.append(torch.arange(off, off + s.size))
                off += s.size
            if not changed:
                return None
            p = torch.cat(parts)
            if layout.repeat > 1:
                r = layout.repeat
                p = (p[:, None] * r + torch.arange(r)[None, :]).reshape(-1)
            return p

        self._permute_bn_stats(perms)
        for info in self._layers.values():
            mod = info.module
            po = full_perm(info.out_layout)
            if po is not None:
                for t in (mod.weight, getattr(mod, "bias", None)):
                    if t is not None:
                        t.data.copy_(t.data.index_select(0, po.to(t.device)))
                if info.kind == "bn" and mod.running_mean is not None:
                    mod.running_mean.copy_(mod.running_mean.index_select(0, po.to(mod.running_mean.device)))
                    mod.running_var.copy_(mod.running_var.index_select(0, po.to(mod.running_var.device)))
            if info.kind in ("conv", "linear") and info.in_layout is not None:
                pi = full_perm(info.in_layout)
                if pi is not None:
                    mod.weight.data.copy_(mod.weight.data.index_select(1, pi.to(mod.weight.device)))
        for g, p in perms.items():
            old = self.channel_order[g]
            self.channel_order[g] = [old[i] for i in p.tolist()]
        self._index_cache.clear()
        self._set_active(self.active)

    def _permute_bn_stats(self, perms: dict[str, torch.Tensor]) -> None:
        for spec_name in list(self.bn_stats):
            per = self.bn_stats[spec_name]
            new: dict[str, dict[str, torch.Tensor]] = {}
            ok = True
            for bn_name, st in per.items():
                layout = self._layers[bn_name].out_layout
                k = st["mean"].numel()
                # Kept positions are a prefix within each segment; map through the permutation of each segment.
                widths = self._stat_widths(layout, k)
                if widths is None:
                    ok = False
                    break
                src_pos: list[int] = []
                for s, w in zip(layout.segments, widths, strict=True):
                    p = perms.get(s.group)
                    seg = list(range(w)) if p is None else p[:w].tolist()
                    if any(j >= w for j in seg):
                        ok = False
                        break
                    base = len(src_pos)
                    src_pos.extend(base + j for j in seg)
                if not ok:
                    break
                ix = torch.tensor(src_pos, dtype=torch.long, device=st["mean"].device)
                new[bn_name] = {"mean": st["mean"][ix], "var": st["var"][ix]}
            if ok:
                self.bn_stats[spec_name] = new
            else:
                log.warning("reorder moved channels outside sub-net %r's kept prefix: its BN statistics were dropped",
                            spec_name)
                del self.bn_stats[spec_name]

    def _stat_widths(self, layout: Layout, k: int) -> list[int] | None:
        if len(layout.segments) == 1:
            return [k]
        return None

    # ----------------------------------------------------------------- extraction
    @torch.no_grad()
    def extract(self, spec: SubnetSpec) -> nn.Module:
        """A plain, physically smaller copy of the sub-net (eval output equals ``net.use(spec)`` eval output)."""
        idx = self._indices(spec)
        stats = self.bn_stats.get(spec.name, {})
        saved = {n: i.module._slim for n, i in self._layers.items()}
        for info in self._layers.values():
            info.module._slim = None
        try:
            model = copy.deepcopy(self.model)
        finally:
            for n, i in self._layers.items():
                i.module._slim = saved[n]
        mods = dict(model.named_modules())
        for name, info in self._layers.items():
            old = mods[name]
            new = self._shrink(info, old, idx[name], stats.get(name))
            parent_name, _, attr = name.rpartition(".")
            setattr(mods[parent_name] if parent_name else model, attr, new)
        for attr, sizes in self._split_sizes(self.widths(spec)).items():
            split = getattr(model, attr)
            split.sizes, split.active = sizes, None
        return model.eval()

    def _shrink(self, info: LayerInfo, old: nn.Module, ix: tuple, stats: dict[str, torch.Tensor] | None) -> nn.Module:
        cls = self._plain_cls[info.name]
        w = old.weight
        if info.kind == "bn":
            (o,) = ix
            n = self._count(o, old.num_features)
            new = cls(n, eps=old.eps, momentum=old.momentum, affine=old.affine,
                      track_running_stats=old.track_running_stats)
            if old.affine:
                new.weight.copy_(_take(old.weight, 0, o))
                new.bias.copy_(_take(old.bias, 0, o))
            if old.track_running_stats:
                if stats is not None:
                    new.running_mean.copy_(stats["mean"])
                    new.running_var.copy_(stats["var"])
                else:
                    new.running_mean.copy_(_take(old.running_mean, 0, o))
                    new.running_var.copy_(_take(old.running_var, 0, o))
                new.num_batches_tracked.copy_(old.num_batches_tracked)
            return new.to(w.device if w is not None else old.running_mean.device)
        if info.kind == "linear":
            o, i = ix
            weight = _take(_take(w, 0, o), 1, i)
            new = cls(weight.shape[1], weight.shape[0], bias=old.bias is not None)
        else:
            o, i, groups = ix
            weight = _take(_take(w, 0, o), 1, i)
            new = cls(
                weight.shape[1] * groups,
                weight.shape[0],
                old.kernel_size,
                stride=old.stride,
                padding=old.padding,
                dilation=old.dilation,
                groups=groups,
                bias=old.bias is not None,
                padding_mode=old.padding_mode,
            )
        new.weight.copy_(weight)
        if old.bias is not None:
            new.bias.copy_(_take(old.bias, 0, o))
        return new.to(w.device)
