"""CIFAR-style ResNets (He et al. 2016, section 4.2): resnet20, resnet56.

Three stages of 16/32/64 channels, ``(depth - 2) / 6`` basic blocks each, a 3x3 stride-1 stem and no
max-pool, so the net works on 28x28 and 32x32 inputs. Where a block changes shape the shortcut is a
1x1 conv + BN ("option B") rather than zero-padding, so every channel group stays an ordinary
conv/BN group that graph analysis can slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimrt.models.registry import init_weights, register_model
from slimrt.models.resnet import basic_stage, zero_init_residual_bn

__all__ = ["ResNetCifar", "resnet20", "resnet56"]


class ResNetCifar(nn.Module):
    """ResNet of depth ``6n + 2`` for small images.

    Args:
        depth: 20, 32, 44, 56, 110, ...
        in_channels: input image channels.
        num_classes: classifier outputs.
        widths: channels of the three stages.
        zero_init_residual: start each block's last BN gamma at 0 (block starts as identity).
    """

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 64),
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 56, ...), got {depth}")
        if len(widths) != 3:
            raise ValueError(f"widths must hold 3 stage widths, got {list(widths)}")
        n = (depth - 2) // 6
        w1, w2, w3 = (int(w) for w in widths)
        self.conv1 = nn.Conv2d(in_channels, w1, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = basic_stage(w1, w1, n, stride=1)
        self.layer2 = basic_stage(w1, w2, n, stride=2)
        self.layer3 = basic_stage(w2, w3, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, num_classes)
        init_weights(self)
        if zero_init_residual:
            zero_init_residual_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model
def resnet20(in_channels: int = 3, num_classes: int = 10, **kwargs) -> ResNetCifar:
    """ResNet-20 for 28/32 px images (~0.27M params, ~41M MACs on 3x32x32)."""
    return ResNetCifar(20, in_channels=in_channels, num_classes=num_classes, **kwargs)


@register_model
def resnet56(in_channels: int = 3, num_classes: int = 10, **kwargs) -> ResNetCifar:
    """ResNet-56 for 28/32 px images (~0.86M params, ~126M MACs on 3x32x32)."""
    return ResNetCifar(56, in_channels=in_channels, num_classes=num_classes, **kwargs)
