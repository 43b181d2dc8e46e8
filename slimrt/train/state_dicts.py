"""Your own weights for ``--init``: find the state dict inside what a training script saved, and load it strictly.

Accepted (all read with ``torch.load(weights_only=True)``, so no pickled code runs):

- a plain ``state_dict`` (``torch.save(model.state_dict(), f)``, torchvision / timm weight files);
- a wrapper dict holding it under ``state_dict``, ``model``, ``model_state_dict``, ``model_state`` or ``net``
  (one level of nesting also works, e.g. ``{"model": {"state_dict": ...}}``), such as a training loop's checkpoint
  with optimizer and epoch beside the weights; a slimrt ``model.pt`` (its channel order comes along);
- keys prefixed by ``module.`` (DistributedDataParallel / DataParallel) or ``_orig_mod.`` (``torch.compile``).

A state dict that does not fit the architecture is refused in one line naming the first few missing, unexpected and
wrongly shaped keys with their counts. Missing ``num_batches_tracked`` buffers (old BatchNorm files) are tolerated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from slimrt.errors import CheckpointError

__all__ = ["WRAPPER_KEYS", "STRIPPED_PREFIXES", "find_state_dict", "strip_prefixes", "load_state_dict_strict"]

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "model_state", "net")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 3


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def find_state_dict(obj: Any, source: str = "--init") -> tuple[dict[str, torch.Tensor], Any]:
    """The state dict inside ``obj`` and the slimrt channel order saved beside it (None for other files).

    Raises:
        CheckpointError: no mapping of parameter names to tensors is found; the message lists the top-level keys.
    """
    if _is_state_dict(obj):
        return dict(obj), None
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if _is_state_dict(inner):
                return dict(inner), obj.get("channel_order") if key == "state_dict" else None
            if isinstance(inner, Mapping):
                for key2 in WRAPPER_KEYS:
                    if _is_state_dict(inner.get(key2)):
                        return dict(inner[key2]), None
        keys = ", ".join(sorted(map(str, obj))[:8]) or "nothing"
        raise CheckpointError(
            f"{source} holds no state dict of tensors (top-level keys: {keys}); save model.state_dict(), or a dict "
            f"with it under one of {', '.join(WRAPPER_KEYS)}"
        )
    raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict; save model.state_dict()")


def strip_prefixes(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a ``module.`` / ``_orig_mod.`` prefix shared by every key (repeatedly: ``module._orig_mod.x``)."""
    out = dict(sd)
    changed = True
    while changed and out:
        changed = False
        for prefix in STRIPPED_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    return out


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (", ..." if len(names) > _SHOWN else "")


def load_state_dict_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str = "--init",
                           what: str = "this architecture") -> None:  # fmt: skip
    """Load ``sd`` into ``model`` (prefixes stripped); every parameter and buffer must be present with its shape.

    Raises:
        CheckpointError: one line: counts and first names of missing, unexpected and wrongly shaped keys.
    """
    sd = strip_prefixes(sd)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} {'x'.join(map(str, sd[k].shape)) or 'scalar'} vs {'x'.join(map(str, v.shape)) or 'scalar'}"
              for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]  # fmt: skip
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key{'s' * (len(missing) > 1)} ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key{'s' * (len(unexpected) > 1)} ({_few(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch{'es' * (len(shapes) > 1)} (file vs model: {_few(shapes)})")
        raise CheckpointError(
            f"{source} does not fit {what}: {'; '.join(parts)}. Check --arch and its options (num_classes, "
            "in_channels, widths) against the network that saved the file"
        )
    model.load_state_dict(sd, strict=False)  # everything checked above; only num_batches_tracked may be absent
