"""The ``model.pt`` checkpoint: a versioned plain dict that ``torch.load(weights_only=True)`` can read.

Layout (version 1)::

    format: "slimrt-checkpoint"   version: 1
    arch: registry name (or the user's import path)      arch_kwargs: factory options
    state_dict: model weights *after* the channel reorder (load them into a fresh model as they are)
    channel_order: group -> cumulative permutation       bn_stats: sub-net -> BN module -> {"mean", "var"}
    subnets: SubnetSpec dicts (widths, MACs, params, accuracies)
    input_shape, mean, std, dataset, config (JSON-able), extra, torch_version, slimrt_version, created

Only tensors, str, int, float, bool, None, list and dict are stored, so loading never runs code. The
architecture is rebuilt from the registry; an import path stored in the file is never imported unless
the user passes it again explicitly (``arch_override`` / ``--arch``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import ValidationError

from slimrt.errors import CheckpointError, SlimrtError
from slimrt.io import atomic_write
from slimrt.schema import SubnetSpec

if TYPE_CHECKING:
    from slimrt.train.dynamic import DynamicNet

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "Checkpoint", "save_checkpoint", "load_checkpoint"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "slimrt-checkpoint"
CHECKPOINT_VERSION = 1
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


# --------------------------------------------------------------------------------------------------------- saving


def _plain(value: Any, where: str, tensors: bool = False) -> Any:
    """Return ``value`` as str/int/float/bool/None/list/dict (and tensors when allowed), or raise CheckpointError."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, torch.Tensor):
        if not tensors:
            raise CheckpointError(f"{where}: tensors are not allowed here (it must stay JSON-able)")
        return value.detach().cpu().clone()
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where}: dict keys must be strings, got {type(k).__name__} {k!r}")
            out[k] = _plain(v, f"{where}.{k}", tensors)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", tensors) for i, v in enumerate(value)]
    raise CheckpointError(
        f"{where}: cannot store a {type(value).__name__} in a checkpoint "
        "(only str, int, float, bool, None, list, dict and tensors are allowed)"
    )


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(
    path: str | Path,
    *,
    net: DynamicNet,
    arch: str,
    arch_kwargs: Mapping[str, Any],
    subnets: Sequence[SubnetSpec],
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    dataset: str,
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temp file in the same folder, then ``os.replace``).

    Args:
        path: destination, usually ``model.pt``.
        net: the trained dynamic network (weights saved after any channel reorder).
        arch: registry name, or the import path the user gave with ``--arch``.
        arch_kwargs: factory options; ``in_channels`` defaults to ``input_shape[0]`` if absent.
        subnets: the searched sub-nets (unique names).
        input_shape: one sample's shape, e.g. ``(1, 28, 28)``.
        mean: per-channel normalization mean.
        std: per-channel normalization std.
        dataset: dataset name.
        config: training configuration (JSON-able).
        extra: anything else (plain values and tensors).

    Returns:
        The written path.
    """
    path = Path(path)
    shape = [int(v) for v in input_shape]
    if not shape or any(v < 1 for v in shape):
        raise CheckpointError(f"input_shape must be positive ints such as (1, 28, 28), got {list(input_shape)}")
    mean_l, std_l = [float(v) for v in mean], [float(v) for v in std]
    if len(mean_l) != len(std_l) or len(mean_l) not in (1, shape[0]) or any(s <= 0 for s in std_l):
        raise CheckpointError(f"mean {mean_l} / std {std_l} must have 1 or {shape[0]} entries, std > 0")
    names = [s.name for s in subnets]
    if len(set(names)) != len(names):
        raise CheckpointError(f"sub-net names must be unique, got {names}")
    groups = {g.name: g.channels for g in net.groups}
    for s in subnets:
        bad = {g: w for g, w in s.widths.items() if g not in groups or w > groups[g]}
        if bad:
            raise CheckpointError(f"sub-net {s.name!r} names unknown groups or widths above full: {bad}")
    kwargs = dict(_plain(dict(arch_kwargs), "arch_kwargs"))
    kwargs.setdefault("in_channels", shape[0])
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "arch": str(arch),
        "arch_kwargs": kwargs,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.model.state_dict().items()},
        "channel_order": {str(g): [int(i) for i in order] for g, order in net.channel_order.items()},
        "subnets": [_plain(s.model_dump(), f"subnets[{s.name}]") for s in subnets],
        "bn_stats": _plain(net.bn_stats, "bn_stats", tensors=True),
        "input_shape": shape,
        "mean": mean_l,
        "std": std_l,
        "dataset": str(dataset),
        "config": _plain(dict(config), "config"),
        "extra": _plain(dict(extra or {}), "extra", tensors=True),
        "torch_version": str(torch.__version__),
        "slimrt_version": _slimrt_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    _atomic_torch_save(payload, path)
    log.info("saved checkpoint %s (%s, %d sub-nets)", path, arch, len(subnets))
    return path


def _slimrt_version() -> str:
    from slimrt import __version__

    return __version__


# -------------------------------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint. ``subnets`` are largest first (by MACs)."""

    path: Path
    arch: str
    arch_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    channel_order: dict[str, list[int]]
    subnets: list[SubnetSpec]
    bn_stats: dict[str, dict[str, dict[str, torch.Tensor]]]
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset: str
    config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    torch_version: str = ""
    version: int = CHECKPOINT_VERSION
    arch_override: str | None = None

    def subnet(self, name: str) -> SubnetSpec:
        """The stored sub-net called ``name``."""
        for s in self.subnets:
            if s.name == name:
                return s
        raise KeyError(f"checkpoint {self.path} has no sub-net {name!r}; it has {[s.name for s in self.subnets]}")

    def resolved_arch(self) -> str:
        """The architecture string to build: the user's override, or the stored registry name.

        Raises:
            CheckpointError: the stored arch is an import path and the user did not pass it explicitly, or the
                stored name is not registered here.
        """
        from slimrt.models import is_registered

        if self.arch_override is not None:
            if self.arch_override != self.arch:
                log.warning("checkpoint was trained as %r; building %r as requested", self.arch, self.arch_override)
            return self.arch_override
        if ":" in self.arch:
            raise CheckpointError(
                f"checkpoint {self.path} names the architecture by import path {self.arch!r}; slimrt never imports "
                f"code named inside a file. If you trust that code, pass it yourself: --arch {self.arch}"
            )
        if not is_registered(self.arch):
            raise CheckpointError(
                f"checkpoint {self.path} uses architecture {self.arch!r}, which this slimrt does not register; "
                "pass --arch package.module:factory to build it"
            )
        return self.arch

    def build_model(self) -> torch.nn.Module:
        """A freshly initialised model of the checkpoint's architecture (no weights loaded)."""
        from slimrt.models import create_model

        arch = self.resolved_arch()
        try:
            return create_model(arch, **self.arch_kwargs)
        except SlimrtError as e:
            raise CheckpointError(f"cannot rebuild architecture {arch!r} from {self.path}: {e}") from e

    def dynamic_net(self) -> DynamicNet:
        """A :class:`DynamicNet` (eval mode) with weights, channel order and per-sub-net BN statistics restored."""
        from slimrt.train.dynamic import DynamicNet

        model = self.build_model()
        net = DynamicNet(model, torch.zeros(1, *self.input_shape))
        try:
            net.model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as e:
            raise CheckpointError(
                f"weights in {self.path} do not fit {self.resolved_arch()} {self.arch_kwargs}: {e}"
            ) from e
        groups = {g.name: g.channels for g in net.groups}
        for s in self.subnets:
            bad = {g: w for g, w in s.widths.items() if g not in groups or w > groups[g]}
            if bad:
                raise CheckpointError(
                    f"sub-net {s.name!r} in {self.path} does not fit the rebuilt network's channel groups: {bad} "
                    f"(groups here: {groups})"
                )
        net.load_extra_state(channel_order=self.channel_order, bn_stats=self.bn_stats)
        net.eval()
        return net


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        m = _GLOBAL.search(msg)
        if m or "GLOBAL" in msg:
            what = f" ({m.group(1)})" if m else ""
            raise CheckpointError(
                f"{path} carries pickled code{what}; refusing to load it. A slimrt checkpoint holds only tensors "
                "and plain values; re-save it with slimrt"
            ) from e
        raise CheckpointError(f"{path} is not a slimrt checkpoint (not a torch file, or corrupt)") from e
    except Exception as e:  # torch raises many types for damaged files; all mean the same to the user
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path} is truncated or corrupt ({first}); copy or re-create the checkpoint") from e


def _require(obj: Mapping[str, Any], key: str, types: type | tuple[type, ...], path: Path) -> Any:
    if key not in obj:
        raise CheckpointError(f"checkpoint {path} lacks {key!r} (damaged, or written by another tool)")
    value = obj[key]
    if not isinstance(value, types):
        raise CheckpointError(f"checkpoint {path}: {key!r} should be {types}, found {type(value).__name__}")
    return value


def load_checkpoint(path: str | Path, arch_override: str | None = None) -> Checkpoint:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and validate it.

    Args:
        path: the ``model.pt`` file.
        arch_override: architecture the *user* passed (``--arch``); needed when the checkpoint names an import
            path, since paths read from a file are never imported.

    Raises:
        CheckpointError: missing file, not a slimrt checkpoint, truncated/corrupt, pickled code, unknown version.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if not path.is_file():
        hint = " (that is an exported artifact; pass its source model.pt)" if (path / "manifest.json").exists() else ""
        raise CheckpointError(f"{path} is not a file{hint}")
    obj = _torch_load(path)
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            kind = "a plain state dict"
        elif isinstance(obj, dict):
            kind = f"a dict with format={obj.get('format')!r}"
        else:
            kind = f"a {type(obj).__name__}"
        raise CheckpointError(
            f"{path} is not a slimrt checkpoint: it holds {kind}, expected format={CHECKPOINT_FORMAT!r} "
            "(write one with `slimrt train`)"
        )
    version = obj.get("version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} is slimrt checkpoint version {version!r}; this slimrt reads version {CHECKPOINT_VERSION} "
            "(upgrade slimrt or re-train)"
        )
    state_dict = _require(obj, "state_dict", dict, path)
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint {path}: state_dict entries {bad[:5]} are not tensors")
    try:
        subnets = [SubnetSpec.model_validate(s) for s in _require(obj, "subnets", list, path)]
    except ValidationError as e:
        raise CheckpointError(f"checkpoint {path} holds an invalid sub-net spec: {e}") from e
    input_shape = tuple(int(v) for v in _require(obj, "input_shape", list, path))
    mean = tuple(float(v) for v in _require(obj, "mean", list, path))
    std = tuple(float(v) for v in _require(obj, "std", list, path))
    if not all(math.isfinite(v) for v in mean + std) or any(v <= 0 for v in std):
        raise CheckpointError(f"checkpoint {path}: invalid normalization mean={mean} std={std}")
    return Checkpoint(
        path=path,
        arch=_require(obj, "arch", str, path),
        arch_kwargs=dict(_require(obj, "arch_kwargs", dict, path)),
        state_dict=state_dict,
        channel_order={str(g): [int(i) for i in o] for g, o in _require(obj, "channel_order", dict, path).items()},
        subnets=sorted(subnets, key=lambda s: s.macs, reverse=True),
        bn_stats=_require(obj, "bn_stats", dict, path),
        input_shape=input_shape,
        mean=mean,
        std=std,
        dataset=_require(obj, "dataset", str, path),
        config=dict(_require(obj, "config", dict, path)),
        extra=dict(obj.get("extra") or {}),
        torch_version=str(obj.get("torch_version", "")),
        version=int(version),
        arch_override=arch_override,
    )
