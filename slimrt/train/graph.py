"""Channel-group analysis with torch.fx: which channels of a CNN must shrink together.

A *channel group* is a set of channel positions that every layer touching it must keep or drop together: the
output channels of a plain conv, a residual stream (all tensors added together), the input and output of a
depthwise conv. A concat along channels does not merge groups; its result is a *layout* of several segments.
The network's input channels, the classifier's outputs and the channels of grouped (non-depthwise) convs are
fixed (not prunable).

Further rules:

- A concat feeding an add (``cat([a(x), b(x)]) + proj(x)``) splits the other operand's group at the cut points,
  each piece tied to its concatenated part.
- Squeeze-and-excitation ``x * gate(x)``: the gate's last conv/linear output is tied to ``x``'s group; the reduce
  width is a group of its own. Reshapes that only add or drop unit dims after the channels (``view(N, C, 1, 1)``,
  ``unsqueeze(2)``, ``g[:, :, None, None]``, ``flatten(1)`` of ``N x C x 1 x 1``) keep the layout.
- ``torch.split`` / ``chunk`` along channels cuts the source's groups at the split points (like a concat feeding
  an add) and each piece gets its slice: :attr:`GraphAnalysis.splits`. Their sizes follow the active widths:
  :class:`~slimrt.train.dynamic.DynamicNet` replaces each such call by a :class:`ChannelSplit` module that splits
  at the kept sizes, and an extracted network keeps that module with its sub-net's sizes.
- Channel shuffle (``view(N, g, C // g, H, W)`` ... ``view(N, C, H, W)`` or ``flatten(1, 2)``) interleaves
  channels, which no prefix of kept channels survives. It is treated conservatively: the channels entering the
  shuffle and those leaving it are fixed (not prunable); layers inside the branches between shuffles stay
  prunable.
"""

from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from slimrt.errors import GraphError

__all__ = ["ChannelGroup", "Segment", "Layout", "LayerInfo", "SplitInfo", "GraphAnalysis", "ChannelSplit", "analyze"]


@dataclass(frozen=True)
class ChannelGroup:
    """A set of channels that shrink together; ``name`` is the first layer that produces it."""

    name: str
    channels: int
    prunable: bool


@dataclass(frozen=True)
class Segment:
    """``size`` consecutive channels of a tensor that belong to ``group``."""

    group: str
    size: int


@dataclass(frozen=True)
class Layout:
    """Channel structure of a tensor: its segments in order; ``repeat`` features per channel after a flatten."""

    segments: tuple[Segment, ...]
    repeat: int = 1

    @property
    def channels(self) -> int:
        return sum(s.size for s in self.segments)


@dataclass
class LayerInfo:
    """A parameterised layer and the channel layouts it reads and writes."""

    name: str
    kind: str  # "conv", "dwconv", "gconv", "bn", "linear"
    module: nn.Module
    in_layout: Layout | None
    out_layout: Layout
    out_positions: int = 1  # spatial positions of the output (H*W), for MAC counts


@dataclass
class SplitInfo:
    """A ``torch.split`` / ``chunk`` of a tensor along its channels (fx node ``name``) and the layout of each piece."""

    name: str
    dim: int
    pieces: list[Layout]


@dataclass
class GraphAnalysis:
    groups: list[ChannelGroup]
    layers: dict[str, LayerInfo] = field(default_factory=dict)
    splits: dict[str, SplitInfo] = field(default_factory=dict)


class ChannelSplit(nn.Module):
    """Splits a tensor along channels at ``sizes``; ``active`` (set by DynamicNet) overrides them for a sub-net."""

    def __init__(self, sizes: list[int], dim: int = 1) -> None:
        super().__init__()
        self.sizes = [int(v) for v in sizes]
        self.dim = dim
        self.active: list[int] | None = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(x, self.active if self.active is not None else self.sizes, self.dim)

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, dim={self.dim}"


_PASSTHROUGH_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_PASSTHROUGH_FUNCS = {
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    F.hardswish,
    F.hardsigmoid,
    F.sigmoid,
    F.tanh,
    F.dropout,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
}
_PASSTHROUGH_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "detach", "float"}
_BINARY_FUNCS = {operator.add, operator.iadd, operator.sub, operator.mul, operator.imul, operator.truediv}
_BINARY_FUNCS |= {torch.add, torch.sub, torch.mul, torch.div}
_BINARY_METHODS = {"add", "add_", "sub", "mul", "mul_", "div"}
_REDUCE_METHODS = {"mean", "sum", "amax"}


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.size: dict[str, int] = {}
        self.order: list[str] = []
        self.fixed: set[str] = set()
        self.pieces: dict[str, list[str]] = {}  # a group split into consecutive pieces (see split)

    def new(self, name: str, size: int) -> str:
        base, i = name, 1
        while name in self.parent:
            i += 1
            name = f"{base}#{i}"
        self.parent[name] = name
        self.size[name] = size
        self.order.append(name)
        return name

    def find(self, a: str) -> str:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        # The earlier-created raw group names the merged group.
        if self.order.index(rb) < self.order.index(ra):
            ra, rb = rb, ra
        self.parent[rb] = ra

    def leaves(self, name: str) -> list[str]:
        """``name`` itself, or the pieces it was split into (recursively), in channel order."""
        if name not in self.pieces:
            return [name]
        return [leaf for p in self.pieces[name] for leaf in self.leaves(p)]

    def split(self, name: str, sizes: list[int]) -> None:
        """Split the group of leaf ``name`` into consecutive pieces of ``sizes``: every member of its class is split
        alike and the k-th pieces of all members are united (they still shrink together, piece by piece)."""
        root = self.find(name)
        members = [m for m in self.order if m not in self.pieces and self.find(m) == root]
        first: list[str] | None = None
        for m in members:
            start, mine = 0, []
            for size in sizes:
                mine.append(self.new(f"{m}[{start}:{start + size}]", size))
                start += size
            self.pieces[m] = mine
            if first is None:
                first = mine
            else:
                for a, b in zip(first, mine, strict=True):
                    self.union(a, b)


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(meta.shape)


def analyze(model: nn.Module, example_input: torch.Tensor) -> tuple[GraphAnalysis, fx.GraphModule]:
    """Trace ``model`` and find its channel groups and parameterised layers.

    Raises:
        GraphError: the model cannot be traced, or a node uses an op whose channel behaviour is unknown.
    """
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 - report any tracing failure in one clear error
        raise GraphError(
            f"torch.fx could not trace {type(model).__name__}: {e}. slimrt needs a forward without "
            "data-dependent control flow."
        ) from e
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example_input)
    finally:
        model.train(was_training)

    uf = _UnionFind()
    layouts: dict[fx.Node, Layout] = {}
    pieces: dict[fx.Node, list[Layout]] = {}  # the outputs of a split / chunk
    splits: dict[str, SplitInfo] = {}
    shuffled: dict[fx.Node, int] = {}  # channel-shuffle intermediates (channels split over two dims): channels
    layers: dict[str, LayerInfo] = {}
    modules = dict(gm.named_modules())

    def err(node: fx.Node, what: str) -> GraphError:
        return GraphError(f"channel-group analysis cannot reason about node {node.name!r} ({what})")

    def lay(arg: object) -> Layout | None:
        return layouts.get(arg) if isinstance(arg, fx.Node) else None

    def single(name: str, size: int) -> Layout:
        return Layout((Segment(uf.new(name, size), size),))

    def expand(layout: Layout) -> Layout:
        """The layout with every split group replaced by its pieces."""
        segs = tuple(Segment(g, uf.size[g]) for s in layout.segments for g in uf.leaves(s.group))
        return Layout(segs, layout.repeat)

    def refine(layout: Layout, cuts: set[int]) -> None:
        """Split the groups of ``layout`` whose channel range a cut in ``cuts`` falls inside."""
        start = 0
        for seg in layout.segments:
            inner = sorted(c - start for c in cuts if start < c < start + seg.size)
            if inner:
                bounds = [0, *inner, seg.size]
                uf.split(seg.group, [b - a for a, b in zip(bounds, bounds[1:], strict=False)])
            start += seg.size

    def unify(a: Layout, b: Layout, node: fx.Node) -> Layout:
        a, b = expand(a), expand(b)
        if a.repeat != b.repeat or a.channels != b.channels:
            raise err(node, f"op {node.target!r} combines tensors with different channel structure")
        if [s.size for s in a.segments] != [s.size for s in b.segments]:
            # e.g. cat([a(x), b(x)]) + proj(x): each concatenated part is tied to its slice of the other operand
            cuts = {c for lo in (a, b) for c in itertools.accumulate(s.size for s in lo.segments)}
            refine(a, cuts)
            refine(b, cuts)
            a, b = expand(a), expand(b)
        for sa, sb in zip(a.segments, b.segments, strict=True):
            uf.union(sa.group, sb.group)
        return a

    def fix(layout: Layout) -> None:
        uf.fixed.update(s.group for s in expand(layout).segments)

    def split(node: fx.Node, src: Layout | None, dim: int) -> None:
        meta = node.meta.get("tensor_meta")
        in_shape = _shape(node.args[0])
        if src is None or in_shape is None or not isinstance(meta, (tuple, list)):
            raise err(node, "split of a tensor without tracked channels or known shapes")
        dim %= len(in_shape)
        if dim == 0:
            raise err(node, "split along the batch dimension")
        if dim != 1:
            pieces[node] = [src] * len(meta)
            return
        if src.repeat != 1:
            raise err(node, "split along features after a flatten")
        sizes = [int(m.shape[1]) for m in meta]
        refine(expand(src), set(itertools.accumulate(sizes)))
        segs, out = list(expand(src).segments), []
        for size in sizes:
            mine: list[Segment] = []
            while sum(x.size for x in mine) < size:
                mine.append(segs.pop(0))
            out.append(Layout(tuple(mine)))
        pieces[node] = out
        splits[node.name] = SplitInfo(node.name, 1, out)

    def reshape(node: fx.Node, src: Layout | None) -> None:
        in_shape, out_shape = _shape(node.args[0]), _shape(node)
        if (src is not None and in_shape is not None and out_shape is not None and len(in_shape) >= 3
                and len(out_shape) > len(in_shape) and out_shape[0] == in_shape[0]
                and out_shape[1] != in_shape[1] and out_shape[1] * out_shape[2] == in_shape[1]):
            # channel shuffle (or any split of the channels over two dims): fixed, see the module docstring
            fix(src)
            shuffled[node] = in_shape[1]
            return
        layouts[node] = _flatten(node, src, err)

    def shuffle_step(node: fx.Node) -> None:
        """A node reading a channel-shuffle intermediate: pass it on, or end it with a fixed group."""
        src = node.args[0] if node.args else None
        what = node.target if node.op == "call_method" else getattr(node.target, "__name__", node.target)
        others = [a for a in node.all_input_nodes if a in shuffled and a is not src]
        if src not in shuffled or others:
            raise err(node, f"{what!r} of a channel-shuffle intermediate")
        channels, out_shape = shuffled[src], _shape(node)
        if what in ("contiguous", "clone", "transpose", "permute"):
            ndim = len(_shape(src) or (0,))
            if what == "transpose" and any(isinstance(d, int) and d % ndim == 0 for d in node.args[1:3]):
                raise err(node, "transpose of the batch dimension")
            if what == "permute" and _dims(node)[:1] != [0]:
                raise err(node, "permute of the batch dimension")
            shuffled[node] = channels
        elif what in ("view", "reshape", "flatten") and out_shape is not None and out_shape[1] == channels:
            layouts[node] = single(f"{node.name}", channels)
            fix(layouts[node])
        else:
            raise err(node, f"{what!r} of a channel-shuffle intermediate")

    def check_channels(node: fx.Node, layout: Layout, expected: int) -> None:
        if layout.channels * layout.repeat != expected:
            raise err(node, f"expects {expected} input features, tracked layout has {layout.channels * layout.repeat}")

    for node in gm.graph.nodes:
        shape = _shape(node)
        if node.op == "placeholder":
            if shape is not None and len(shape) >= 2:
                layouts[node] = single("input", shape[1])
                fix(layouts[node])
            continue
        if node.op == "output":
            outs = node.args[0] if isinstance(node.args[0], (tuple, list)) else (node.args[0],)
            for o in outs:
                if (lo := lay(o)) is not None:
                    fix(lo)
            continue
        if node.op == "get_attr":
            if shape is not None and len(shape) >= 2:
                raise err(node, f"tensor attribute {node.target!r} used outside a module")
            continue

        if any(a in shuffled for a in node.all_input_nodes):
            shuffle_step(node)
            continue

        if node.op == "call_module":
            mod = modules[node.target]
            src = lay(node.args[0]) if node.args else None
            if node.target in layers:
                raise err(node, f"module {node.target!r} is called more than once")
            if isinstance(mod, nn.Conv2d):
                if src is None:
                    raise err(node, f"conv {node.target!r} input has no tracked channels")
                check_channels(node, src, mod.in_channels)
                hw = math.prod(shape[2:]) if shape else 1
                if mod.groups == 1:
                    out, kind = single(node.target, mod.out_channels), "conv"
                elif mod.groups == mod.in_channels == mod.out_channels:
                    out, kind = src, "dwconv"
                else:
                    fix(src)
                    out, kind = single(node.target, mod.out_channels), "gconv"
                    fix(out)
                layers[node.target] = LayerInfo(node.target, kind, mod, src, out, hw)
                layouts[node] = out
            elif isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
                if src is None:
                    raise err(node, f"batch norm {node.target!r} input has no tracked channels")
                if src.repeat != 1:
                    raise err(node, f"batch norm {node.target!r} after a spatial flatten")
                check_channels(node, src, mod.num_features)
                layers[node.target] = LayerInfo(node.target, "bn", mod, src, src)
                layouts[node] = src
            elif isinstance(mod, nn.Linear):
                if src is None:
                    raise err(node, f"linear {node.target!r} input has no tracked channels")
                if shape is not None and len(shape) != 2:
                    raise err(node, f"linear {node.target!r} on a {len(shape)}-d tensor")
                check_channels(node, src, mod.in_features)
                out = single(node.target, mod.out_features)
                layers[node.target] = LayerInfo(node.target, "linear", mod, src, out)
                layouts[node] = out
            elif isinstance(mod, nn.Flatten):
                layouts[node] = _flatten(node, src, err)
            elif isinstance(mod, _PASSTHROUGH_MODULES):
                if src is not None:
                    layouts[node] = src
            else:
                raise err(node, f"module {node.target!r} of type {type(mod).__name__}")
            continue

        if node.op == "call_function":
            fn = node.target
            if fn in _BINARY_FUNCS:
                a, b = (lay(x) for x in node.args[:2])
                if a is not None and b is not None:
                    layouts[node] = unify(a, b, node)
                elif a is not None or b is not None:
                    layouts[node] = a or b
            elif fn in (torch.cat, torch.concat):
                tensors = node.args[0]
                dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
                parts = [lay(t) for t in tensors]
                if any(p is None for p in parts):
                    raise err(node, "torch.cat of tensors without tracked channels")
                ndim = len(shape) if shape else 4
                if dim in (1, 1 - ndim):
                    if any(p.repeat != 1 for p in parts):
                        raise err(node, "torch.cat along features after a flatten")
                    layouts[node] = Layout(tuple(s for p in parts for s in p.segments))
                else:
                    out = parts[0]
                    for p in parts[1:]:
                        out = unify(out, p, node)
                    layouts[node] = out
            elif fn is torch.flatten:
                start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                if start != 1:
                    raise err(node, f"torch.flatten with start_dim={start} (only 1 is supported)")
                layouts[node] = _flatten(node, lay(node.args[0]), err)
            elif fn is torch.reshape:
                reshape(node, lay(node.args[0]))
            elif fn in (torch.split, torch.chunk):
                split(node, lay(node.args[0]), _arg(node, 2, "dim", 0))
            elif fn is torch.unsqueeze:
                layouts[node] = _unsqueeze(node, lay(node.args[0]), _arg(node, 1, "dim", None), err)
            elif fn is operator.getitem and node.args[0] in pieces:
                layouts[node] = pieces[node.args[0]][node.args[1]]
            elif fn is operator.getitem and lay(node.args[0]) is not None and _unit_index(node.args[1]):
                layouts[node] = lay(node.args[0])
            elif fn in _PASSTHROUGH_FUNCS:
                if (src := lay(node.args[0])) is not None:
                    layouts[node] = src
            elif fn is torch.mean:
                layouts[node] = _reduce(node, lay(node.args[0]), err)
            elif fn in (operator.getitem, getattr, len) or fn is torch.Tensor.size:
                if lay(node.args[0]) is not None and shape is not None:
                    raise err(node, "indexing a tensor")
            else:
                if any(lay(a) is not None for a in node.args):
                    raise err(node, f"function {getattr(fn, '__name__', fn)!r}")
            continue

        if node.op == "call_method":
            m = node.target
            src = lay(node.args[0])
            if m in _PASSTHROUGH_METHODS:
                if src is not None:
                    layouts[node] = src
            elif m in _BINARY_METHODS:
                b = lay(node.args[1]) if len(node.args) > 1 else None
                layouts[node] = unify(src, b, node) if (src is not None and b is not None) else (src or b)
            elif m in _REDUCE_METHODS:
                layouts[node] = _reduce(node, src, err)
            elif m in ("view", "reshape", "flatten"):
                if m == "flatten":
                    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                    if start != 1:
                        raise err(node, f"flatten with start_dim={start} (only 1 is supported)")
                reshape(node, src)
            elif m in ("split", "chunk"):
                split(node, src, _arg(node, 2, "dim", 0))
            elif m == "unsqueeze":
                layouts[node] = _unsqueeze(node, src, _arg(node, 1, "dim", None), err)
            elif m in ("transpose", "permute", "expand", "expand_as") and src is not None:
                in_shape, out_shape = _shape(node.args[0]), _shape(node)
                keeps = m == "transpose" and all(isinstance(d, int) and d % len(in_shape or (0,)) > 1
                                                 for d in node.args[1:3])
                keeps |= m == "permute" and tuple(_dims(node))[:2] == (0, 1)
                keeps |= m in ("expand", "expand_as") and in_shape is not None and out_shape is not None and \
                    in_shape[:2] == out_shape[:2]
                if not keeps:
                    raise err(node, f"tensor method {m!r} that moves the batch or channel dimension")
                layouts[node] = src
            elif m in ("size", "dim"):
                pass
            else:
                if src is not None:
                    raise err(node, f"tensor method {m!r}")
            continue

    # Resolve raw segments to their union-find roots, build the groups.
    roots: dict[str, ChannelGroup] = {}
    fixed_roots = {uf.find(leaf) for g in uf.fixed for leaf in uf.leaves(g)}
    for raw in uf.order:
        if raw in uf.pieces:  # split: only its pieces are groups
            continue
        r = uf.find(raw)
        if r not in roots:
            roots[r] = ChannelGroup(r, uf.size[r], r not in fixed_roots)

    def resolve(layout: Layout | None) -> Layout | None:
        if layout is None:
            return None
        return Layout(tuple(Segment(uf.find(s.group), s.size) for s in expand(layout).segments), layout.repeat)

    for info in layers.values():
        info.in_layout = resolve(info.in_layout)
        info.out_layout = resolve(info.out_layout)
    for sp in splits.values():
        sp.pieces = [resolve(p) for p in sp.pieces]
    used = {s.group for info in layers.values() for lo in (info.in_layout, info.out_layout) if lo for s in lo.segments}
    used |= {s.group for sp in splits.values() for p in sp.pieces for s in p.segments}
    groups = [g for g in roots.values() if g.name in used]
    return GraphAnalysis(groups=groups, layers=layers, splits=splits), gm


def _arg(node: fx.Node, pos: int, name: str, default: object) -> object:
    return node.args[pos] if len(node.args) > pos else node.kwargs.get(name, default)


def _dims(node: fx.Node) -> list[object]:
    """The dims of a ``permute`` call (given as varargs or one sequence)."""
    dims = list(node.args[1:]) or list(node.kwargs.get("dims", ()))
    return list(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims


def _unit_index(index: object) -> bool:
    """True for ``[:, :, None, None]``-like indexing: batch and channels whole, only unit dims added."""
    full = slice(None, None, None)
    if not isinstance(index, tuple):
        return False
    if len(index) >= 2 and index[0] == full and index[1] == full:
        return all(i is None or i == full or i is Ellipsis for i in index[2:])
    return index[0] is Ellipsis and len(index) > 1 and all(i is None for i in index[1:])


def _unsqueeze(node: fx.Node, src: Layout | None, dim: object, err) -> Layout:
    out_shape = _shape(node)
    if src is None or out_shape is None or not isinstance(dim, int):
        raise err(node, "unsqueeze of a tensor without tracked channels or known shapes")
    if dim % len(out_shape) < 2:
        raise err(node, f"unsqueeze at dim {dim} moves the batch or channel dimension")
    return src


def _flatten(node: fx.Node, src: Layout | None, err) -> Layout:
    if src is None:
        raise err(node, "flatten of a tensor without tracked channels")
    in_shape = _shape(node.args[0])
    out_shape = _shape(node)
    if in_shape is None or out_shape is None:
        raise err(node, "flatten without known shapes")
    if len(out_shape) >= 2 and out_shape[:2] == in_shape[:2] and math.prod(out_shape) == math.prod(in_shape):
        return src  # channels stay at dim 1, only dims after them change (e.g. N x C -> N x C x 1 x 1)
    if len(out_shape) != 2 or out_shape[0] != in_shape[0]:
        raise err(node, f"reshape {tuple(in_shape)} -> {tuple(out_shape)} that does not keep (batch, features)")
    per_channel = math.prod(in_shape[2:]) if len(in_shape) > 2 else 1
    return Layout(src.segments, src.repeat * per_channel)


def _reduce(node: fx.Node, src: Layout | None, err) -> Layout:
    if src is None:
        raise err(node, "reduction of a tensor without tracked channels")
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    in_shape = _shape(node.args[0]) or ()
    dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
    dims = tuple(d % len(in_shape) for d in dims) if in_shape else dims
    if not dims or 0 in dims or 1 in dims:
        raise err(node, f"reduction over dims {dims or 'all'} that include batch or channels")
    return src
