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


# ---------------------------------------------------------------------------------------- gates, splits, shuffles
class SEGates(nn.Module):
    """Three squeeze-and-excitation gates: conv gate with hardsigmoid, Linear gates reshaped by ``view``, by
    ``[:, :, None, None]`` and by ``unsqueeze``; a residual add around the last one."""

    def __init__(self, in_channels: int = 1, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.se_reduce = nn.Conv2d(16, 4, 1)
        self.se_expand = nn.Conv2d(4, 16, 1)
        self.fc1 = nn.Linear(16, 6)
        self.fc2 = nn.Linear(6, 16)
        self.conv2 = nn.Conv2d(16, 12, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(12)
        self.fc3 = nn.Linear(12, 3)
        self.fc4 = nn.Linear(3, 12)
        self.fc5 = nn.Linear(12, 5)
        self.fc6 = nn.Linear(5, 12)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        x = F.hardswish(self.bn1(self.conv(x)))
        x = x * F.hardsigmoid(self.se_expand(F.relu(self.se_reduce(self.pool(x)))))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        x = x * s.view(s.size(0), -1, 1, 1)
        y = self.bn2(self.conv2(x))
        g = torch.sigmoid(self.fc4(F.relu(self.fc3(y.mean((2, 3), keepdim=True).flatten(1)))))
        y = y * g[:, :, None, None]
        h = F.hardsigmoid(self.fc6(F.relu(self.fc5(y.mean((2, 3))))))
        y = y + y * h.unsqueeze(-1).unsqueeze(-1)
        return self.fc(y.mean((2, 3)))


class SplitChunk(nn.Module):
    """``torch.split`` with sizes, ``Tensor.chunk``, ``torch.chunk`` and ``Tensor.split`` with one size along
    channels: pieces convolved, concatenated back, added to a projection, and split again across those parts."""

    def __init__(self, in_channels: int = 1, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 12, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(12)
        self.ca = nn.Conv2d(4, 6, 3, padding=1)
        self.cb = nn.Conv2d(4, 5, 1)
        self.proj = nn.Conv2d(12, 15, 1)
        self.bnp = nn.BatchNorm2d(15)
        self.cp = nn.Conv2d(5, 7, 3, padding=1)
        self.cq = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.post = nn.Conv2d(7 + 5 + 6 + 5 + 6, 10, 1)
        self.fc = nn.Linear(10, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))  # 12 channels: cut at 4 (split), 8 (chunk of the second piece), 6
        a, b = torch.split(x, [4, 8], dim=1)
        b1, b2 = b.chunk(2, dim=1)
        s, t = x.split(6, 1)
        y = torch.cat([F.relu(self.ca(a)), self.cb(b1), b2], 1) + self.bnp(self.proj(x))  # 6 + 5 + 4 = 15
        p, q, r = torch.chunk(F.relu(y), 3, 1)  # 5, 5, 5: cuts inside ca's 6 and cb's 5 channels
        z = torch.cat([self.cp(p), q, self.cq(s), r, t], 1)
        return self.fc(F.relu(self.post(z)).mean((2, 3)))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle (``view`` / ``transpose`` / ``contiguous`` / ``view``)."""
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, -1, h, w)


def _branch(cin: int, mid: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
        nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
        nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )  # fmt: skip


class ShuffleUnits(nn.Module):
    """ShuffleNetV2-style: a stride-2 unit (two branches, cat, shuffle) and a stride-1 unit (chunk, branch, cat,
    shuffle written with ``reshape`` / ``permute`` / ``flatten(1, 2)``), then a 1x1 head conv."""

    def __init__(self, in_channels: int = 1, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.down1 = nn.Sequential(nn.Conv2d(8, 8, 3, 2, 1, groups=8, bias=False), nn.BatchNorm2d(8),
                                   nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.down2 = _branch(8, 12, 8, 2)
        self.unit = _branch(8, 10, 8, 1)
        self.head = nn.Sequential(nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = channel_shuffle(torch.cat([self.down1(x), self.down2(x)], 1), 2)
        x1, x2 = x.chunk(2, dim=1)
        y = torch.cat([x1, self.unit(x2)], 1)
        n, c, h, w = y.shape
        y = y.reshape(n, 2, c // 2, h, w).permute(0, 2, 1, 3, 4).flatten(1, 2)
        return self.fc(self.head(y).mean((2, 3)))


def cat_add(in_channels: int = 1, num_classes: int = 5) -> nn.Module:
    """Factory (``--arch nets:cat_add``) of the concat-feeding-an-add network of test_graph_cat_add.py."""
    from test_graph_cat_add import CatAdd

    if (in_channels, num_classes) != (1, 5):
        raise ValueError("CatAdd reads 1 input channel and has 5 classes")
    return CatAdd()


def masked_forward(net: DynamicNet, spec, x: torch.Tensor) -> torch.Tensor:
    """The full network with every conv/BN/linear output zeroed outside ``spec``'s kept channels (the model's own
    forward, full-size splits included): what a sub-net must compute."""
    widths = net.widths(spec)
    mods = dict(net.model.named_modules())
    handles = []
    for name, info in net._layers.items():  # the layouts found by the analysis
        keep = torch.cat([torch.arange(s.size) < widths[s.group] for s in info.out_layout.segments])
        keep = keep.repeat_interleave(info.out_layout.repeat)

        def hook(_m, _i, out, keep=keep):
            shape = (1, -1) + (1,) * (out.dim() - 2)
            return out * keep.to(out.dtype).view(shape)

        handles.append(mods[name].register_forward_hook(hook))
    try:
        with torch.no_grad(), net.use(None):
            return net(x)
    finally:
        for h in handles:
            h.remove()
