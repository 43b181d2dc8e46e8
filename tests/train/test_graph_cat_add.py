"""A concat feeding an add (Inception-ResNet-like ``cat([a(x), b(x)]) + proj(x)``): each concatenated part is tied
to its slice of the other operand, and extracted sub-nets equal the masked network."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from slimrt.train import DynamicNet
from slimrt.train.graph import analyze


class CatAdd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(8)
        self.a = nn.Conv2d(8, 6, 3, padding=1)
        self.bna = nn.BatchNorm2d(6)
        self.b = nn.Conv2d(8, 10, 1)
        self.bnb = nn.BatchNorm2d(10)
        self.proj = nn.Conv2d(8, 16, 1)
        self.bnp = nn.BatchNorm2d(16)
        self.c = nn.Conv2d(8, 4, 1)  # a second concat split differently, added to the first sum
        self.d = nn.Conv2d(8, 12, 3, padding=1)
        self.post = nn.Conv2d(16, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        y = torch.cat([self.bna(self.a(x)), self.bnb(self.b(x))], 1) + self.bnp(self.proj(x))
        y = F.relu(y) + torch.cat([self.c(x), self.d(x)], 1)
        y = F.relu(self.post(y))
        return self.fc(y.mean((2, 3)))


def test_concat_plus_tensor_splits_the_other_operand_per_part():
    analysis, _ = analyze(CatAdd(), torch.zeros(1, 1, 8, 8))
    groups = {g.name: g for g in analysis.groups}
    out = analysis.layers["proj"].out_layout
    # cuts at 6 (a|b) and 4 (c|d): proj's 16 channels are pieces 0:4, 4:6, 6:16, each tied to a, a, b / c, d, d
    assert [s.size for s in out.segments] == [4, 2, 10]
    a, b = analysis.layers["a"].out_layout.segments, analysis.layers["b"].out_layout.segments
    c, d = analysis.layers["c"].out_layout.segments, analysis.layers["d"].out_layout.segments
    assert [s.group for s in a] == [out.segments[0].group, out.segments[1].group]
    assert [s.group for s in b] == [out.segments[2].group]
    assert [s.group for s in c] == [out.segments[0].group]
    assert [s.group for s in d] == [out.segments[1].group, out.segments[2].group]
    assert [s.group for s in analysis.layers["post"].in_layout.segments] == [s.group for s in out.segments]
    assert sum(groups[s.group].channels for s in out.segments) == 16
    assert all(groups[s.group].prunable for s in out.segments)


def test_extracted_subnets_match_the_masked_network():
    torch.manual_seed(0)
    net = DynamicNet(CatAdd(), torch.zeros(1, 1, 8, 8))
    x = torch.randn(8, 1, 8, 8)
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()
    rng = random.Random(0)
    for i in range(6):
        spec = net.spec({g.name: rng.randint(1, g.channels) for g in net.prunable_groups}, name=f"s{i}")
        with net.use(spec):
            y = net(x)
        sub = net.extract(spec)
        assert (sub(x) - y).abs().max().item() <= 1e-5
        assert sum(p.numel() for p in sub.parameters()) == spec.params == net.params(spec)
    order = {g.name: torch.randperm(g.channels) for g in net.prunable_groups}
    y = net(x)
    net.reorder(order)
    torch.testing.assert_close(net(x), y, rtol=1e-4, atol=1e-5)
