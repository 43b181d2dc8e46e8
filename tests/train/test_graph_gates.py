"""Squeeze-and-excitation gates, split / chunk along channels and channel shuffle: channel groups, sub-nets equal
to their extracted networks and to the masked full network, ONNX export and serving (the concat-feeding-an-add
network of test_graph_cat_add.py too)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nets import SEGates, ShuffleUnits, SplitChunk, cat_add, masked_forward
from torch import nn

from slimrt.errors import GraphError
from slimrt.train import DynamicNet
from slimrt.train.graph import ChannelSplit, analyze

NETS = {"SEGates": SEGates, "SplitChunk": SplitChunk, "ShuffleUnits": ShuffleUnits, "cat_add": cat_add}
SHAPE = (1, 8, 8)


def _layouts(model: nn.Module) -> tuple[dict, dict]:
    analysis, _ = analyze(model, torch.zeros(1, *SHAPE))
    out = {n: [(s.group, s.size) for s in i.out_layout.segments] for n, i in analysis.layers.items()}
    return {g.name: g for g in analysis.groups}, out


def _dynamic(factory, seed: int = 0) -> DynamicNet:
    """A seeded net with BN statistics from one train-mode batch (so BN is not the identity)."""
    torch.manual_seed(seed)
    net = DynamicNet(factory(), torch.zeros(1, *SHAPE))
    net.train()
    with torch.no_grad():
        net(torch.randn(16, *SHAPE))
    return net.eval()


def test_se_gate_expand_is_tied_to_the_gated_tensor():
    groups, out = _layouts(SEGates())
    assert out["se_expand"] == out["conv"] == [("conv", 16)]  # conv gate (hardsigmoid)
    assert out["fc2"] == out["conv"]  # Linear gate reshaped with view(N, -1, 1, 1)
    assert out["fc4"] == out["conv2"] == [("conv2", 12)]  # g[:, :, None, None]
    assert out["fc6"] == out["conv2"]  # unsqueeze(-1).unsqueeze(-1), residual add
    for reduce in ("se_reduce", "fc1", "fc3", "fc5"):  # each reduce width is its own prunable group
        assert out[reduce] == [(reduce, groups[reduce].channels)] and groups[reduce].prunable
    assert groups["conv"].prunable and groups["conv2"].prunable and not groups["fc"].prunable


def test_split_and_chunk_cut_the_source_groups():
    groups, out = _layouts(SplitChunk())
    # stem's 12 channels are cut at 4 (split [4, 8]), 8 (chunk of the 8) and 6 (split(6)): pieces 4, 2, 2, 4
    stem = out["stem"]
    assert [s for _, s in stem] == [4, 2, 2, 4] and len({g for g, _ in stem}) == 4
    analysis, _ = analyze(SplitChunk(), torch.zeros(1, *SHAPE))
    assert [s.size for s in analysis.layers["cq"].in_layout.segments] == [4, 2]  # x.split(6)[0]
    assert [s.group for s in analysis.layers["cb"].in_layout.segments] == [stem[1][0], stem[2][0]]  # chunk piece
    # cat([ca 6, cb 5, b2 4]) + proj, then chunk(3): ca cut 5|1, cb cut 4|1, proj tied to every piece
    assert out["proj"] == [*out["ca"], *out["cb"], stem[3]]
    assert [s for _, s in out["ca"]] == [5, 1] and [s for _, s in out["cb"]] == [4, 1]
    assert out["cp"] == [("cp", 7)] and [s.size for s in analysis.layers["post"].in_layout.segments] == \
        [7, 1, 4, 4, 2, 1, 4, 2, 4]
    assert all(groups[g].prunable for g, _ in stem + out["proj"])
    sizes = {n: [p.channels for p in sp.pieces] for n, sp in analysis.splits.items()}
    assert sorted(sizes.values()) == [[4, 4], [4, 8], [5, 5, 5], [6, 6]]


def test_channel_shuffle_fixes_the_crossing_channels_only():
    groups, out = _layouts(ShuffleUnits())
    prunable = {g.name for g in groups.values() if g.prunable}
    # the branch-internal widths, the stem (read by both stride-2 branches) and the head stay prunable
    assert prunable == {"stem.0", "down2.0", "unit.0", "head.0"}
    for layer in ("down1.2", "down2.5", "unit.5"):  # branch outputs feed a shuffle: fixed
        assert not groups[out[layer][0][0]].prunable


@pytest.mark.parametrize("name", NETS)
def test_subnets_equal_extracted_and_masked_networks(name):
    net = _dynamic(NETS[name])
    x = torch.randn(4, *SHAPE)
    rng = random.Random(name)
    for i in range(4):
        spec = net.spec({g.name: rng.randint(1, g.channels) for g in net.prunable_groups}, name=f"s{i}")
        with torch.no_grad(), net.use(spec):
            y = net(x)
        sub = net.extract(spec)
        with torch.no_grad():
            # float32 sums over at most a few hundred terms of values below 10: errors ~1e-6, far under 1e-5
            assert (sub(x) - y).abs().max().item() <= 1e-5
        assert (masked_forward(net, spec, x) - y).abs().max().item() <= 1e-5
        assert sum(p.numel() for p in sub.parameters()) == spec.params == net.params(spec)
    with torch.no_grad():
        assert not torch.allclose(y, net(x))  # the last sub-net differs from the full network


def test_extracted_split_modules_hold_the_subnet_sizes():
    net = _dynamic(SplitChunk)
    half = net.uniform_spec(0.5, "half")
    sub = net.extract(half)
    splits = sorted((m.sizes for m in sub.modules() if isinstance(m, ChannelSplit)), key=len)
    full = sorted((m.sizes for m in net.model.modules() if isinstance(m, ChannelSplit)), key=len)
    assert len(splits) == len(full) == 4
    assert all(sum(s) < sum(f) for s, f in zip(splits, full, strict=True))
    assert {len(s) for s in splits} == {2, 3}
    x = torch.randn(2, *SHAPE)
    with torch.no_grad(), net.use(half):
        torch.testing.assert_close(sub(x), net(x), rtol=0, atol=1e-5)
    assert all(m.active is None for m in net.model.modules() if isinstance(m, ChannelSplit))  # restored after use


@pytest.mark.parametrize("name", NETS)
def test_exports_and_serves(name, tmp_path, export_and_serve, one_torch_thread):
    net = _dynamic(NETS[name])
    rng = random.Random(1)
    half = net.spec({g.name: max(1, g.channels // 2 + rng.randint(-1, 1)) for g in net.prunable_groups}, name="half")
    result, served, y, ref = export_and_serve(net, [net.full_spec(), half], tmp_path, arch=f"nets:{name}",
                                              arch_kwargs={"num_classes": 5})
    assert result.ok and [r.name for r in result.subnets] == ["full", "half"]
    assert all(r.max_abs_diff <= 1e-4 for r in result.subnets)
    assert y.shape == (1, 5) and served in ("full", "half")
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-4)


class _Bad(nn.Module):
    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.op == "shuffle-then-relu":
            x = F.relu(x.view(x.size(0), 2, 2, 8, 8)).flatten(1, 2)
        elif self.op == "unsqueeze-1":
            return self.fc(x.mean((2, 3)).unsqueeze(1).squeeze(1))
        elif self.op == "transpose-channels":
            x = x.transpose(1, 2).transpose(1, 2)
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize(("op", "match"), [
    ("shuffle-then-relu", "relu.* of a channel-shuffle intermediate"),
    ("unsqueeze-1", "unsqueeze at dim 1"),
    ("transpose-channels", "'transpose' that moves the batch or channel"),
])  # fmt: skip
def test_unsupported_reshapes_are_named(op, match):
    with pytest.raises(GraphError, match=match):
        analyze(_Bad(op), torch.zeros(1, 1, 8, 8))
