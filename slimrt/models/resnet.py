"""ImageNet-style ResNet-18 with torchvision-compatible state-dict keys.

Keys match ``torchvision.models.resnet18`` (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer2.0.downsample.0/1``, ``fc``), so torchvision weights load with ``load_state_dict`` when
``in_channels=3`` and ``num_classes=1000``. ``small_input=True`` swaps the 7x7/2 stem and max-pool for a
3x3/1 stem (no max-pool), the usual variant for 28/32 px images; the parameter names stay the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimrt.models.registry import init_weights, register_model

__all__ = ["BasicBlock", "basic_stage", "zero_init_residual_bn", "ResNet", "resnet18"]


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block (two 3x3 conv-BN, identity or 1x1 conv-BN ``downsample``); the CIFAR
    ResNets (:mod:`slimrt.models.resnet_cifar`) use it too."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def basic_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` basic blocks; the first one changes width and stride."""
    layers = [BasicBlock(inplanes, planes, stride)]
    layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def zero_init_residual_bn(model: nn.Module) -> None:
    """Start every basic block's last BN gamma at 0 (each block begins as the identity)."""
    for m in model.modules():
        if isinstance(m, BasicBlock):
            nn.init.zeros_(m.bn2.weight)


class ResNet(nn.Module):
    """ResNet with basic blocks (ResNet-18/34 layouts).

    Args:
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        in_channels: input image channels.
        num_classes: classifier outputs.
        small_input: 3x3 stride-1 stem and no max-pool (for 28/32 px images).
        widths: channels of the four stages.
        zero_init_residual: start each block's last BN gamma at 0.
    """

    def __init__(
        self,
        layers: Sequence[int],
        in_channels: int = 3,
        num_classes: int = 1000,
        small_input: bool = False,
        widths: Sequence[int] = (64, 128, 256, 512),
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError(f"ResNet needs 4 stages, got layers={list(layers)} widths={list(widths)}")
        self.small_input = bool(small_input)
        w = [int(c) for c in widths]
        if self.small_input:
            self.conv1 = nn.Conv2d(in_channels, w[0], 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, w[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = basic_stage(w[0], w[0], layers[0], stride=1)
        self.layer2 = basic_stage(w[0], w[1], layers[1], stride=2)
        self.layer3 = basic_stage(w[1], w[2], layers[2], stride=2)
        self.layer4 = basic_stage(w[2], w[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w[3], num_classes)
        init_weights(self)
        # torchvision keeps nn.Linear's default init for fc; do the same so fine-tuning behaves alike.
        self.fc.reset_parameters()
        if zero_init_residual:
            zero_init_residual_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if not self.small_input:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model
def resnet18(in_channels: int = 3, num_classes: int = 10, small_input: bool = False, **kwargs) -> ResNet:
    """ResNet-18 (11.2M params at 1000 classes); ``small_input=True`` for 28/32 px images."""
    return ResNet((2, 2, 2, 2), in_channels=in_channels, num_classes=num_classes, small_input=small_input, **kwargs)
