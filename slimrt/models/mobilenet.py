"""MobileNet v1 (depthwise separable convs) and v2 (inverted residuals), small-image variants.

By default (``small_input=True``) the stem is stride 1 and, in v2, the 24-channel stage keeps its
resolution too (the common CIFAR variant): 32 px ends at 2 (v1) / 4 (v2), 28 px at 2 / 4. With
``small_input=False`` the ImageNet strides are used. v2 follows torchvision's module layout
(``features.N.conv...``, ``classifier.1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimrt.models.registry import init_weights, register_model

__all__ = ["make_divisible", "ConvBNAct", "DepthwiseSeparable", "MobileNetV1", "InvertedResidual", "MobileNetV2"]
__all__ += ["mobilenet_v1", "mobilenet_v2"]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor``, never more than 10% below ``v`` (as in torchvision)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + ReLU/ReLU6; indices 0/1/2 like torchvision's Conv2dNormActivation."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, groups: int = 1, relu6: bool = True
    ) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True) if relu6 else nn.ReLU(inplace=True),
        )


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv-BN-ReLU followed by 1x1 pointwise conv-BN-ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = ConvBNAct(in_ch, in_ch, 3, stride, groups=in_ch, relu6=False)
        self.pw = ConvBNAct(in_ch, out_ch, 1, 1, relu6=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    """MobileNet v1 (Howard et al. 2017).

    Args:
        in_channels: input image channels.
        num_classes: classifier outputs.
        width_mult: multiplier on every layer's channels (rounded to multiples of 8).
        small_input: stride-1 stem for 28/32 px images.
        dropout: dropout probability before the classifier.
    """

    # (out_channels, stride) of the 13 depthwise separable blocks.
    CFG: Sequence[tuple[int, int]] = (
        (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
        (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
    )  # fmt: skip

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width_mult: float = 1.0,
        small_input: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(in_channels, c, 3, 1 if small_input else 2, relu6=False)]
        for out, stride in self.CFG:
            out = make_divisible(out * width_mult)
            layers.append(DepthwiseSeparable(c, out, stride))
            c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.fc(self.dropout(x))


class InvertedResidual(nn.Module):
    """1x1 expand (unless ratio 1) -> 3x3 depthwise -> 1x1 linear projection, residual add when shapes match."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(inp, hidden, 1))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNet v2 (Sandler et al. 2018).

    Args:
        in_channels: input image channels.
        num_classes: classifier outputs.
        width_mult: multiplier on every layer's channels (rounded to multiples of 8).
        small_input: stride-1 stem and stride-1 second stage for 28/32 px images.
        dropout: dropout probability before the classifier.
        zero_init_residual: start the last BN gamma of every residual block at 0.
    """

    # (expand ratio t, channels c, repeats n, first stride s)
    CFG: Sequence[tuple[int, int, int, int]] = (
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
    )  # fmt: skip

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width_mult: float = 1.0,
        small_input: bool = True,
        dropout: float = 0.2,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        c = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNAct(in_channels, c, 3, 1 if small_input else 2)]
        for i, (t, ch, n, s) in enumerate(self.CFG):
            out = make_divisible(ch * width_mult)
            if small_input and i == 1:
                s = 1
            for j in range(n):
                features.append(InvertedResidual(c, out, s if j == 0 else 1, t))
                c = out
        features.append(ConvBNAct(c, last, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        init_weights(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, InvertedResidual) and m.use_res_connect:
                    nn.init.zeros_(m.conv[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


@register_model
def mobilenet_v1(in_channels: int = 3, num_classes: int = 10, **kwargs) -> MobileNetV1:
    """MobileNet v1 for 28/32 px images (~3.2M params, ~46M MACs on 3x32x32 at width 1)."""
    return MobileNetV1(in_channels=in_channels, num_classes=num_classes, **kwargs)


@register_model
def mobilenet_v2(in_channels: int = 3, num_classes: int = 10, **kwargs) -> MobileNetV2:
    """MobileNet v2 for 28/32 px images (~2.2M params, ~88M MACs on 3x32x32 at width 1)."""
    return MobileNetV2(in_channels=in_channels, num_classes=num_classes, **kwargs)
