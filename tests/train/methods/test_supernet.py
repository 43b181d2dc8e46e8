"""Supernet warm start: independent per-group widths on the unit grid, importance order, and the knob is read."""

from __future__ import annotations

import pytest
import torch

from slimrt.models import create_model
from slimrt.train import DynamicNet
from slimrt.train.config import SearchConfig
from slimrt.train.data import load_dataset
from slimrt.train.methods.progressive import progressive_search
from slimrt.train.methods.supernet import importance_order, supernet_sampler, supernet_warm_start, width_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _net(seed: int = 0) -> DynamicNet:
    torch.manual_seed(seed)
    return DynamicNet(create_model("resnet20", in_channels=1, num_classes=10, widths=(8, 8, 16)),
                      torch.zeros(1, 1, 16, 16))  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", val_size=100, limit_train=256, seed=0)


def test_sampler_draws_each_group_independently_on_its_grid():
    net = _net()
    cfg = SearchConfig.build({"group_size": 4, "sampled_subnets": 3, "seed": 1})
    grid = width_grid(net, cfg)
    assert grid["layer3.1.conv1"] == [4, 8, 12, 16] and grid["conv1"] == [2, 4, 6, 8]
    sample = supernet_sampler(net, cfg)
    specs = sample(0)
    assert len(specs) == 5 and specs[0].macs == net.macs() and specs[-1].widths == {g: w[0] for g, w in grid.items()}
    assert [s.widths for s in sample(0)] == [s.widths for s in specs]  # seeded by step
    drawn = [s for t in range(20) for s in sample(t)[1:-1]]
    assert all(s.widths[g] in grid[g] for s in drawn for g in grid)
    uniform = [all(s.widths[g] / net.group(g).channels == next(iter(s.widths.values())) / 8 for g in grid)
               for s in drawn]  # fmt: skip
    assert not all(uniform)  # non-uniform: groups vary independently


def test_importance_order_keeps_the_function(data):
    net = _net().eval()
    x = data.x_val[:8]
    with torch.no_grad():
        before = net(x)
        order = importance_order(net)
        net.reorder(order)
        after = net(x)
    assert torch.allclose(before, after, atol=1e-5)
    assert any(o != sorted(o) for o in order.values())


def test_supernet_epochs_change_the_weights_and_the_search_records_them(data):
    cfg = SearchConfig.build({"group_size": 4, "sampled_subnets": 1, "batch_size": 64, "augment": False,
                              "supernet_epochs": 1, "supernet_lr": 0.01})  # fmt: skip
    net = _net()
    w0 = net.model.fc.weight.detach().clone()
    stats = supernet_warm_start(net, data, cfg)
    assert stats.steps == 4 and not torch.equal(w0, net.model.fc.weight)
    cfg = cfg.updated(ranking="l1", subnets=2, epochs=0, finetune_steps=0, calib_batches=1, min_macs=0.5,
                      macs_step=0.3, max_cut=1.0)  # fmt: skip
    final, report = progressive_search(_net(), data, cfg)
    assert report.supernet_epochs == 1 and report.timings["supernet"] > 0 and len(final) == 2
