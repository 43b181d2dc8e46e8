"""US-Nets baseline: sandwich sampling, in-place distillation knob, BN calibration, MACs matching, compute budget."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from nets import tiny_resnet20

from slimrt.train.config import SearchConfig
from slimrt.train.data import load_dataset
from slimrt.train.loops import (
    ComputeMeter,
    calibrate,
    calibration_batches,
    evaluate,
    fixed_sampler,
    train_epochs,
)
from slimrt.train.methods.base import match_macs
from slimrt.train.methods.usnet import USNET_WIDTH_RANGE, steps_for_budget, train_usnet, usnet_ratios, usnet_sampler

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _cfg(**kw) -> SearchConfig:
    base = {"batch_size": 32, "lr": 0.1, "finetune_lr": 0.05, "seed": 0, "augment": False, "epochs": 2,
            "calib_batches": 8, "subnets": 3, "eval_batch_size": 500}  # fmt: skip
    return SearchConfig.build(base, kw)




@pytest.fixture(scope="module")
def data():
    """Overrides tests/train/conftest.py's ``data``: twice the training images."""
    return load_dataset("synthetic", val_size=200, limit_train=1024, seed=0)


@pytest.fixture(scope="module")
def pretrained(data):
    """A tiny ResNet-20 whose full network is trained (the common starting point of every method)."""
    net = tiny_resnet20()
    train_epochs(net, data, fixed_sampler([net.full_spec()]), 2, _cfg(), lr=0.1, phase="pretrain")
    return net


@pytest.fixture(scope="module")
def usnet_trained(data, pretrained):
    net = copy.deepcopy(pretrained)
    meter = ComputeMeter()
    specs, report = train_usnet(_cfg(), data, net, meter=meter)
    return net, specs, report, meter


def test_sandwich_has_four_widths_with_max_and_min():
    seen = set()
    for step in range(200):
        r = usnet_ratios(step, seed=3)
        assert len(r) == 4
        assert r[0] == 1.0 and r[1] == 0.25
        assert all(0.25 <= v <= 1.0 for v in r)
        assert r == usnet_ratios(step, seed=3)  # a pure function of the step (resumable, equal on every rank)
        seen.update(r[2:])
    assert len(seen) == 400  # continuous draws
    assert min(seen) < 0.3 and max(seen) > 0.95  # spread over the range
    assert usnet_ratios(0, seed=3) != usnet_ratios(0, seed=4)

    net = tiny_resnet20()
    specs = usnet_sampler(net, seed=0)(5)
    assert len(specs) == 4
    assert specs[0].macs == net.macs()
    assert specs[1].widths == net.uniform_spec(0.25, "x").widths
    assert all(specs[1].macs <= s.macs <= specs[0].macs for s in specs)
    assert all(s.nested_in(specs[0]) and specs[1].nested_in(s) for s in specs)


def test_match_macs_is_the_closest_uniform_width():
    net = tiny_resnet20(widths=(16, 32, 64))
    channels = sorted({g.channels for g in net.prunable_groups})
    # Every uniform sub-net changes only at a ratio k / C for some group size C: enumerate them all.
    ratios = sorted({k / c for c in channels for k in range(1, c + 1)})
    all_macs = sorted({net.uniform_spec(r, "r").macs for r in ratios})
    full = net.macs()
    for frac in (0.9, 0.63, 0.41, 0.2, 0.11, 0.07):
        target = int(frac * full)
        spec, ratio = match_macs(net, target, name="m", width_range=(0.01, 1.0))
        assert spec.name == "m" and spec.macs == net.macs(spec)
        assert spec.widths == net.uniform_spec(ratio, "m").widths
        best = min(abs(m - target) for m in all_macs)
        assert abs(spec.macs - target) == best
        # within one channel step: the next wider / narrower uniform sub-nets bracket the target
        i = all_macs.index(spec.macs)
        lo = all_macs[max(0, i - 1)]
        hi = all_macs[min(len(all_macs) - 1, i + 1)]
        assert lo <= target <= hi
    # clamped to the trained range
    spec, ratio = match_macs(net, 1, width_range=USNET_WIDTH_RANGE)
    assert ratio == 0.25 and spec.widths == net.uniform_spec(0.25, "x").widths


def test_train_usnet_reports_matched_specs_and_compute(usnet_trained, pretrained):
    net, specs, report, meter = usnet_trained
    assert [s.name for s in specs] == ["usnet0", "usnet1", "usnet2"]
    assert report.targets[0] == net.macs() and len(report.achieved) == 3
    assert report.achieved == [s.macs for s in specs]
    assert all(s.val_accuracy is not None and s.test_accuracy is not None for s in specs)
    assert specs[0].test_accuracy > 90
    # compute: every step trains max + min + 2 random widths on one batch, 3 x MACs each
    sampler = usnet_sampler(net, seed=0)
    expected = sum(3 * 32 * sum(s.macs for s in sampler(t)) for t in range(report.steps))
    assert report.train_macs == expected == meter.by_phase["usnet"]
    assert report.steps == 2 * (1024 // 32)
    assert report.other_macs > 0  # calibration + evaluation counted apart from training
    for s in specs:
        assert net.has_bn_stats(s.name)
    # the weights moved away from the pre-trained ones
    assert not torch.equal(net.model.conv1.weight, pretrained.model.conv1.weight)


def test_bn_calibration_changes_stats_and_rescues_narrow_widths(usnet_trained, data):
    net, _, _, _ = usnet_trained
    narrow = net.uniform_spec(0.4, "narrow40")
    assert not net.has_bn_stats("narrow40")
    shared = evaluate(net, narrow, data.x_test, data.y_test)  # shared full-net statistics, sliced
    calibrate(net, [narrow], calibration_batches(data, 8, 32, seed=0))
    stats = net.bn_stats["narrow40"]
    k = narrow.widths[next(g.name for g in net.prunable_groups)]
    bn = net.model.bn1
    assert stats["bn1"]["mean"].shape == (k,)
    assert not torch.allclose(stats["bn1"]["mean"], bn.running_mean[:k])
    assert not torch.allclose(stats["bn1"]["var"], bn.running_var[:k])
    assert all(not torch.equal(st["var"], torch.ones_like(st["var"])) for st in stats.values())  # really refilled
    calibrated = evaluate(net, narrow, data.x_test, data.y_test)
    assert calibrated > shared + 20, (shared, calibrated)


def _budget_run(pretrained, data, distill: bool, steps: int = 3):
    net = copy.deepcopy(pretrained)
    cfg = _cfg(distill=distill, calib_batches=1)
    budget = sum(3 * 32 * sum(s.macs for s in usnet_sampler(net, 0)(t)) for t in range(steps))
    _, report = train_usnet(cfg, data, net, targets=[net.macs() // 3], budget_macs=budget)
    return net, report, budget


def test_budget_and_distillation_knob(pretrained, data):
    a, rep_a, budget = _budget_run(pretrained, data, distill=True)
    b, rep_b, _ = _budget_run(pretrained, data, distill=True)
    c, rep_c, _ = _budget_run(pretrained, data, distill=False)
    assert rep_a.steps == 3 and rep_a.train_macs == budget  # exactly the asked budget
    assert rep_a.distill is True and rep_c.distill is False
    wa, wb, wc = (n.model.layer1[0].conv1.weight for n in (a, b, c))
    assert torch.equal(wa, wb)  # deterministic: any difference below comes from the knob
    assert not torch.allclose(wa, wc)
    # the largest width learns from the labels either way: only the narrower widths' targets changed
    assert math.isfinite(rep_c.train_macs) and rep_c.train_macs == rep_a.train_macs


def test_steps_for_budget_reaches_the_budget():
    net = tiny_resnet20()
    sampler = usnet_sampler(net, seed=1)
    per = [3 * 16 * sum(s.macs for s in sampler(t)) for t in range(10)]
    budget = sum(per[:4]) - 1
    assert steps_for_budget(sampler, 16, budget) == 4
    assert steps_for_budget(sampler, 16, sum(per[:4])) == 4
    assert steps_for_budget(sampler, 16, sum(per[:4]) + 1) == 5


def test_usnet_min_width_sets_the_trained_range(pretrained, data):
    """``usnet_min_width`` is the sandwich rule's narrowest width: the run trains it and serves a target at its MACs,
    where the default range (from 1/4) clamps the same target and says so."""
    narrow = pretrained.uniform_spec(0.125, "narrow")
    assert narrow.macs < pretrained.uniform_spec(0.25, "q").macs
    cfg = _cfg(method="usnet", usnet_min_width=0.125, calib_batches=1)
    sampler = usnet_sampler(pretrained, 0, width_range=(0.125, 1.0))
    assert sampler(0)[1].widths == narrow.widths  # the smallest sub-net of every step
    budget = sum(3 * 32 * sum(s.macs for s in sampler(t)) for t in range(2))
    net = copy.deepcopy(pretrained)
    [spec], report = train_usnet(cfg, data, net, targets=[narrow.macs], budget_macs=budget)
    assert tuple(report.width_range) == (0.125, 1.0) and report.steps == 2 and report.train_macs == budget
    assert spec.widths == narrow.widths and not report.notes

    net = copy.deepcopy(pretrained)
    [spec], report = train_usnet(_cfg(calib_batches=1), data, net, targets=[narrow.macs], budget_macs=budget)
    assert tuple(report.width_range) == USNET_WIDTH_RANGE
    assert spec.widths == pretrained.uniform_spec(0.25, "q").widths
    assert "outside the trained width range" in report.notes[0]


@pytest.mark.parametrize(("fields", "message"), [
    ({"usnet_min_width": 0.125}, "usnet_min_width applies to method 'usnet', not 'progressive'"),
    ({"method": "usnet", "usnet_min_width": 0.01}, "usnet_min_width"),
    ({"method": "usnet", "usnet_min_width": 1.0}, "usnet_min_width"),
])  # fmt: skip
def test_usnet_min_width_is_checked(fields, message):
    from slimrt.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        SearchConfig.build(fields)
