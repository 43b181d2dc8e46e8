"""Width-aware layers: Conv2d, Linear and BatchNorm subclasses that slice their weights to the active sub-net.

:class:`~slimrt.train.dynamic.DynamicNet` switches a wrapped model's parameterised layers to these classes in place
(``_DYN_CLASS``) and back (``_PLAIN_CLASS``); each reads its slice from ``_slim``, set by the network.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Index"]

Index = int | torch.Tensor | None  # None: all channels; int k: the prefix [:k]; tensor: explicit positions


def _take(t: torch.Tensor | None, dim: int, idx: Index) -> torch.Tensor | None:
    if t is None or idx is None:
        return t
    if isinstance(idx, int):
        return t.narrow(dim, 0, idx)
    return t.index_select(dim, idx.to(t.device))


def _subsample_1x1(conv: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """A strided 1x1 convolution without padding as a stride-1 one on the subsampled input (the same numbers).

    oneDNN's backward of a strided 1x1 convolution on channels-last tensors with few channels (for example 4 in,
    8 out at 28x28) corrupts the heap on AVX2-only CPUs (AMD Zen 3 here: "corrupted size vs. prev_size", or a
    hang). The subsampled form never reaches that kernel. Reproduced with torch 2.13.0; see
    tests/train/test_dynamic.py::test_strided_1x1_conv_backward_channels_last.
    """
    if conv.kernel_size == (1, 1) and conv.stride != (1, 1) and conv.padding == (0, 0) and conv.dilation == (1, 1):
        return x[:, :, :: conv.stride[0], :: conv.stride[1]], (1, 1)
    return x, conv.stride


class _DynConv(nn.Conv2d):
    _slim: tuple[Index, Index, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._slim is None and self.padding_mode != "zeros":
            return super().forward(x)
        x, stride = _subsample_1x1(self, x)
        if self._slim is None:
            return F.conv2d(x, self.weight, self.bias, stride, self.padding, self.dilation, self.groups)
        out_idx, in_idx, groups = self._slim
        w = _take(_take(self.weight, 0, out_idx), 1, in_idx)
        return F.conv2d(x, w, _take(self.bias, 0, out_idx), stride, self.padding, self.dilation, groups)


class _DynLinear(nn.Linear):
    _slim: tuple[Index, Index] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._slim is None:
            return super().forward(x)
        out_idx, in_idx = self._slim
        return F.linear(x, _take(_take(self.weight, 0, out_idx), 1, in_idx), _take(self.bias, 0, out_idx))


class _DynBNMixin:
    """Slices a BatchNorm; in eval uses the active sub-net's own statistics when it has them."""

    _slim: tuple[Index, bool, dict[str, torch.Tensor] | None] | None = None
    _calib: dict[str, Any] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self._slim is None and self._calib is None:
            return super().forward(x)  # type: ignore[misc]
        idx, is_full, stats = self._slim if self._slim is not None else (None, True, None)
        w, b = _take(self.weight, 0, idx), _take(self.bias, 0, idx)
        if self._calib is not None:
            c = self._calib
            c["count"] += 1
            return F.batch_norm(x, c["mean"], c["var"], w, b, True, 1.0 / c["count"], self.eps)
        if self.training:
            if is_full:
                return super().forward(x)  # type: ignore[misc]
            return F.batch_norm(x, None, None, w, b, True, 0.0, self.eps)
        if stats is not None:
            mean, var = stats["mean"], stats["var"]
        else:
            mean, var = _take(self.running_mean, 0, idx), _take(self.running_var, 0, idx)
        return F.batch_norm(x, mean, var, w, b, False, 0.0, self.eps)


class _DynBN2d(_DynBNMixin, nn.BatchNorm2d):
    pass


class _DynBN1d(_DynBNMixin, nn.BatchNorm1d):
    pass


_DYN_CLASS = {nn.Conv2d: _DynConv, nn.Linear: _DynLinear, nn.BatchNorm2d: _DynBN2d, nn.BatchNorm1d: _DynBN1d}
_PLAIN_CLASS = {v: k for k, v in _DYN_CLASS.items()}
