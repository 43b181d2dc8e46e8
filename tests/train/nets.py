"""Tiny networks built in code for the train tests (each exercises one channel-group rule)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimrt.models import create_model
from slimrt.train import DynamicNet


class Residual(nn.Module):
    """Stem + two residual blocks (one with a 1x1 projection shortcut) + mean head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.b1c1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.b1bn1 = nn.BatchNorm2d(8)
        self.b1c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.b1bn2 = nn.BatchNorm2d(8)
        self.b2c1 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.b2bn1 = nn.BatchNorm2d(16)
        self.b2c2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.b2bn2 = nn.BatchNorm2d(16)
        self.short = nn.Conv2d(8, 16, 1, stride=2, bias=False)
        self.shortbn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.b1bn1(self.b1c1(x)))
        x = F.relu(x + self.b1bn2(self.b1c2(y)))
        y = F.relu(self.b2bn1(self.b2c1(x)))
        x = F.relu(self.b2bn2(self.b2c2(y)) + self.shortbn(self.short(x)))
        return self.fc(x.mean((2, 3)))


class CatDepthwise(nn.Module):
    """Concat of two branches, a depthwise conv over the concat, a grouped conv, flatten of a 2x2 map, hidden FC."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3, padding=1)
        self.b = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(14)
        self.dw = nn.Conv2d(14, 14, 3, padding=1, groups=14, bias=False)
        self.bn2 = nn.BatchNorm2d(14)
        self.pw = nn.Conv2d(14, 12, 1)
        self.g = nn.Conv2d(12, 12, 3, padding=1, groups=3)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.drop = nn.Dropout(0.1)
        self.fc1 = nn.Linear(12 * 4, 20)
        self.fc = nn.Linear(20, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.a(x), self.b(x)], 1)
        x = F.relu(self.bn(x))
        x = F.relu6(self.bn2(self.dw(x)))
        x = self.g(self.pw(x))
        x = torch.flatten(self.pool(x), 1)
        return self.fc(self.drop(F.relu(self.fc1(x))))


class Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.roll(self.conv(x), 1, dims=1)
        return self.fc(x.mean((2, 3)))


def tiny_resnet20(seed: int = 0, widths: tuple[int, int, int] = (8, 8, 16)) -> DynamicNet:
    """A seeded ResNet-20 for 1x16x16 synthetic images (10 classes), narrowed to ``widths``, as a DynamicNet."""
    torch.manual_seed(seed)
    model = create_model("resnet20", in_channels=1, num_classes=10, widths=widths)
    return DynamicNet(model, torch.zeros(1, 1, 16, 16))
