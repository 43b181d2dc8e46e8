"""Independent baseline: each sub-net trained alone from scratch, with its compute recorded."""

from __future__ import annotations

import pytest
import torch
from nets import tiny_resnet20

from slimrt.errors import ConfigError
from slimrt.train.config import SearchConfig
from slimrt.train.data import load_dataset
from slimrt.train.loops import ComputeMeter
from slimrt.train.methods.independent import fresh_subnet, independent_steps, train_independent

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _cfg(**kw) -> SearchConfig:
    return SearchConfig.build({"batch_size": 32, "lr": 0.1, "seed": 0, "augment": False, "warmup_epochs": 0}, kw)


def test_fresh_subnet_has_the_spec_architecture_and_new_weights():
    net = tiny_resnet20()
    with torch.no_grad():
        net.model.conv1.weight.fill_(0.5)  # "trained" weights that must not leak into the fresh twin
    spec = net.spec({"layer1.0.conv1": 3, net.prunable_groups[0].name: 5}, name="s1")
    sub = fresh_subnet(net, spec, seed=7)
    assert sub.macs() == spec.macs and sub.params() == spec.params
    assert sum(p.numel() for p in sub.model.parameters()) == spec.params
    assert sub.model.conv1.weight.shape[0] == 5
    assert not torch.all(sub.model.conv1.weight == 0.5)
    again = fresh_subnet(net, spec, seed=7)
    assert torch.equal(again.model.conv1.weight, sub.model.conv1.weight)  # seeded
    assert not torch.equal(fresh_subnet(net, spec, seed=8).model.conv1.weight, sub.model.conv1.weight)


def test_independent_training_spends_the_budget_and_records_accuracy():
    data = load_dataset("synthetic", val_size=200, limit_train=512, seed=0)
    net = tiny_resnet20()
    specs = [net.full_spec("big"), net.uniform_spec(0.5, "small")]
    before = {k: v.clone() for k, v in net.model.state_dict().items()}
    cfg = _cfg()
    per_step = 3 * 32 * sum(s.macs for s in specs)
    budget = 40 * per_step - 5
    meter = ComputeMeter()
    kept = {}
    out, report = train_independent(cfg, data, net, specs, meter=meter, budget_macs=budget,
                                    on_trained=lambda s, m: kept.setdefault(s.name, m))  # fmt: skip
    assert independent_steps(specs, 32, budget) == 40
    assert [s.name for s in out] == ["big", "small"]
    assert [s.widths for s in out] == [s.widths for s in specs]
    assert report.steps == 80 and report.budget_macs == budget
    assert budget <= report.train_macs == 40 * per_step < budget + per_step
    assert report.train_macs == meter.train_macs
    assert [p["train_macs"] for p in report.per_subnet] == [3 * 32 * 40 * s.macs for s in specs]
    assert report.other_macs == meter.other_macs > 0
    for s in out:
        assert s.test_accuracy is not None and s.val_accuracy is not None
        assert s.test_accuracy > 20  # learned something: chance is 10%
    assert kept["small"].macs() == specs[1].macs
    # the shared network passed in is only used for its structure
    assert all(torch.equal(before[k], v) for k, v in net.model.state_dict().items())


def test_independent_epochs_mode():
    data = load_dataset("synthetic", val_size=100, limit_train=128, seed=0)
    net = tiny_resnet20()
    out, report = train_independent(_cfg(pretrain_epochs=2), data, net, [net.uniform_spec(0.25, "tiny")])
    assert report.steps == 2 * (128 // 32)
    assert report.train_macs == 3 * 32 * report.steps * out[0].macs
    assert "2 epochs" in report.notes[0]


def test_independent_gets_the_data_parallel_arguments():
    data = load_dataset("synthetic", val_size=100, limit_train=64, seed=0)
    net = tiny_resnet20()
    wrapped, shards = [], []

    def wrap(m):
        wrapped.append(m)
        return m

    def shard(x, y):
        shards.append(len(y))
        return x[: len(y) // 2], y[: len(y) // 2]

    tiny = net.uniform_spec(0.25, "tiny")
    _, report = train_independent(_cfg(pretrain_epochs=1), data, net, [tiny], wrap=wrap, batch_transform=shard)
    assert len(wrapped) == 1 and wrapped[0].macs() == tiny.macs
    assert shards == [32, 32] and report.steps == 2
    assert report.train_macs == 3 * 16 * 2 * tiny.macs  # every step trained on the half batch the shard kept
    with pytest.raises(ConfigError, match="single-process"):
        train_independent(_cfg(), data, net, [tiny], budget_macs=10**9, wrap=wrap)
