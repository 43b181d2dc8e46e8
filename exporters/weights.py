"""Weights stored once: one ``weights.bin`` of full tensors that every sub-net graph points into.

Each sub-net's ONNX graph comes out of the exporter with its own (smaller) initializers, named like
the full network's state-dict keys. :meth:`WeightStore.share` rewrites such a graph in place:

* an initializer equal to the full tensor becomes ONNX external data pointing at that tensor;
* an initializer equal to a *contiguous* prefix of the full tensor (only the leading dimension
  shrinks, e.g. a 1-D BN scale or the output channels of a conv) becomes external data with the
  same offset and a shorter length;
* an initializer equal to a non-contiguous prefix (e.g. a conv weight whose input channels shrink)
  is produced by a ``Slice`` of the full tensor (external data); ONNX Runtime constant-folds that
  slice when the session is created, so inference does no slicing work.

Anything else (per-sub-net BN statistics, small constants, tensors that are not a prefix) stays
inline in the sub-net graph. Offsets in ``weights.bin`` are 64-byte aligned.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["WeightStore", "ShareStats", "is_contiguous_prefix", "ALIGNMENT"]

log = logging.getLogger(__name__)

ALIGNMENT = 64
"""Byte alignment of every tensor inside ``weights.bin``."""

_FULL_SUFFIX = "::full"


def is_contiguous_prefix(sub: tuple[int, ...], full: tuple[int, ...]) -> bool:
    """True when the prefix slice ``full[:sub[0], :sub[1], ...]`` occupies the first bytes of ``full`` (row-major)."""
    if len(sub) != len(full):
        return False
    reduced = [i for i, (s, f) in enumerate(zip(sub, full, strict=True)) if s != f]
    if not reduced:
        return True
    # Row-major: the region is the first prod(sub) elements iff every dimension before the last shrunk one is 1.
    return int(np.prod(sub[: reduced[-1]], dtype=np.int64)) == 1


@dataclass
class ShareStats:
    """What :meth:`WeightStore.share` did to one graph."""

    full: int = 0
    prefix: int = 0
    sliced: int = 0
    inline: int = 0
    inline_bytes: int = 0
    inline_names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Entry:
    array: np.ndarray
    offset: int

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


class WeightStore:
    """The full float32 tensors of a network, laid out once in a weights file.

    Args:
        tensors: full tensors by name (the full network's state-dict keys); only float32 ones are kept.
        location: file name of the weights file, relative to the sub-net ONNX files (same directory).
    """

    def __init__(self, tensors: Mapping[str, np.ndarray], location: str = "weights.bin") -> None:
        self.location = location
        self._entries: dict[str, _Entry] = {}
        offset = 0
        for name, arr in tensors.items():
            a = np.ascontiguousarray(arr)
            if a.dtype != np.float32 or a.ndim == 0:
                continue
            offset = -(-offset // ALIGNMENT) * ALIGNMENT
            self._entries[name] = _Entry(a, offset)
            offset += a.nbytes
        self._size = offset

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    @property
    def nbytes(self) -> int:
        """Size of the weights file in bytes."""
        return self._size

    def write(self, path: str | Path) -> int:
        """Write the weights file (caller handles atomic placement); returns its size in bytes."""
        with open(path, "wb") as f:
            pos = 0
            for e in self._entries.values():
                f.write(b"\0" * (e.offset - pos))
                f.write(e.array.tobytes(order="C"))
                pos = e.offset + e.nbytes
        return pos

    def _external(self, tensor_name: str, key: str, dims: tuple[int, ...]) -> TensorProto:
        e = self._entries[key]
        t = TensorProto(name=tensor_name, data_type=TensorProto.FLOAT, dims=list(dims))
        t.data_location = TensorProto.EXTERNAL
        length = int(np.prod(dims, dtype=np.int64)) * 4
        for k, v in (("location", self.location), ("offset", str(e.offset)), ("length", str(length))):
            t.external_data.add(key=k, value=v)
        return t

    def share(self, model: onnx.ModelProto) -> ShareStats:
        """Rewrite ``model``'s initializers in place to point into the weights file; see the module docstring."""
        g = model.graph
        stats = ShareStats()
        taken = {i.name for i in g.initializer} | {n for node in g.node for n in node.output}
        new_inits: list[TensorProto] = []
        slices: list[onnx.NodeProto] = []
        helpers: dict[str, TensorProto] = {}

        def helper_tensor(name: str, values: list[int]) -> str:
            if name not in helpers:
                helpers[name] = numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)
            return name

        for init in g.initializer:
            entry = self._entries.get(init.name)
            if entry is None or init.data_type != TensorProto.FLOAT or init.data_location == TensorProto.EXTERNAL:
                new_inits.append(init)
                self._count_inline(stats, init)
                continue
            sub = numpy_helper.to_array(init)
            full = entry.array
            kind = self._match(sub, full)
            if kind is None:
                log.warning("initializer %r %s is not a prefix of the shared tensor %s: kept inline",
                            init.name, list(sub.shape), list(full.shape))
                new_inits.append(init)
                self._count_inline(stats, init)
            elif kind == "full" or kind == "prefix":
                new_inits.append(self._external(init.name, init.name, tuple(sub.shape)))
                setattr(stats, kind, getattr(stats, kind) + 1)
            else:
                src = init.name + _FULL_SUFFIX
                if src in taken:
                    raise ValueError(f"cannot add shared tensor {src!r}: the graph already has that name")
                taken.add(src)
                new_inits.append(self._external(src, init.name, tuple(full.shape)))
                r = sub.ndim
                ends = numpy_helper.from_array(np.asarray(sub.shape, dtype=np.int64), init.name + "::ends")
                helpers[ends.name] = ends
                slices.append(
                    helper.make_node(
                        "Slice",
                        [src, helper_tensor(f"slimrt::zeros{r}", [0] * r), ends.name,
                         helper_tensor(f"slimrt::axes{r}", list(range(r)))],
                        [init.name],
                    )
                )
                stats.sliced += 1
        del g.initializer[:]
        g.initializer.extend(new_inits)
        g.initializer.extend(helpers.values())
        old_nodes = list(g.node)
        del g.node[:]
        g.node.extend(slices + old_nodes)
        return stats

    @staticmethod
    def _match(sub: np.ndarray, full: np.ndarray) -> str | None:
        if sub.ndim != full.ndim or any(s > f for s, f in zip(sub.shape, full.shape, strict=True)):
            return None
        view = full[tuple(slice(0, s) for s in sub.shape)]
        if not np.array_equal(view, sub):
            return None
        if sub.shape == full.shape:
            return "full"
        return "prefix" if is_contiguous_prefix(sub.shape, full.shape) else "slice"

    @staticmethod
    def _count_inline(stats: ShareStats, init: TensorProto) -> None:
        stats.inline += 1
        stats.inline_bytes += len(init.raw_data) or init.ByteSize()
        stats.inline_names.append(init.name)
