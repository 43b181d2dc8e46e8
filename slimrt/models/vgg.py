"""VGG with batch norm, CIFAR variant: conv features, global average pool, one Linear classifier.

Max-pools use ``ceil_mode=True`` so five of them take 28 px to 1 (28-14-7-4-2-1) as well as 32 px
(32-16-8-4-2-1). ``features.N`` indices follow torchvision's ``vgg11_bn`` layout; convs carry no bias
(the BN that follows each one makes it redundant).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimrt.models.registry import init_weights, register_model

__all__ = ["VGG", "VGG_CONFIGS", "vgg11_bn"]

VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG-BN for small images.

    Args:
        cfg: channel counts, with ``"M"`` for a 2x2 max-pool.
        in_channels: input image channels.
        num_classes: classifier outputs.
        dropout: dropout probability before the classifier (0 disables it).
    """

    def __init__(
        self, cfg: Sequence[int | str], in_channels: int = 3, num_classes: int = 10, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            else:
                out = int(v)
                layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(self.dropout(x))


@register_model
def vgg11_bn(in_channels: int = 3, num_classes: int = 10, **kwargs) -> VGG:
    """VGG-11 with batch norm for 28/32 px images (~9.2M params, ~153M MACs on 3x32x32)."""
    return VGG(VGG_CONFIGS["vgg11"], in_channels=in_channels, num_classes=num_classes, **kwargs)
