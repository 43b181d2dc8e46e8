from __future__ import annotations

import math

import pytest
import torch
from nets import tiny_resnet20

from slimrt.train.config import SearchConfig
from slimrt.train.loops import (
    ComputeMeter,
    calibrate,
    calibration_batches,
    cosine_lr,
    evaluate,
    fixed_sampler,
    joint_step,
    make_generator,
    make_optimizer,
    sandwich_sampler,
    train_epochs,
    train_steps,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _cfg(**kw) -> SearchConfig:
    return SearchConfig.build({"batch_size": 64, "lr": 0.1, "seed": 0, "augment": False, **kw})


def test_cosine_lr_warms_up_then_decays_to_zero():
    assert cosine_lr(0, 100, 0.1, warmup=10) == pytest.approx(0.01)
    assert cosine_lr(9, 100, 0.1, warmup=10) == pytest.approx(0.1)
    assert cosine_lr(10, 100, 0.1, warmup=10) == pytest.approx(0.1)
    assert cosine_lr(55, 100, 0.1, warmup=10) == pytest.approx(0.05)
    assert cosine_lr(100, 100, 0.1, warmup=10) == pytest.approx(0.0, abs=1e-12)
    lrs = [cosine_lr(s, 50, 0.2) for s in range(50)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_optimizer_decays_only_conv_and_linear_weights():
    net = tiny_resnet20()
    opt = make_optimizer(net, 0.1, weight_decay=1e-3)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for p in net.parameters():
        assert (id(p) in decayed) == (p.dim() > 1)
    assert all(g["nesterov"] for g in opt.param_groups)


def test_evaluate_matches_hand_count(data):
    net = tiny_resnet20().eval()
    spec = net.uniform_spec(0.5, "half")
    x, y = data.x_val, data.y_val
    with torch.no_grad(), net.use(spec):
        expect = 100.0 * (net(x).argmax(1) == y).float().mean().item()
    meter = ComputeMeter()
    assert evaluate(net, spec, x, y, batch_size=37, meter=meter) == pytest.approx(expect)
    assert meter.other_macs == len(y) * spec.macs


def test_joint_step_counts_compute_and_distill_knob_changes_update(data):
    x, y = data.x_train[:32], data.y_train[:32]
    results = {}
    for distill in (True, False):
        net = tiny_resnet20()
        net.train()
        specs = [net.uniform_spec(0.5, "half"), net.full_spec(), net.uniform_spec(0.25, "quarter")]
        opt = make_optimizer(net, 0.1)
        meter = ComputeMeter()
        loss = joint_step(net, opt, x, y, specs, distill=distill, meter=meter)
        assert math.isfinite(loss)
        assert meter.train_macs == 3 * 32 * sum(s.macs for s in specs)
        assert meter.steps == 1
        results[distill] = torch.cat([p.detach().flatten() for p in net.parameters()])
    assert not torch.allclose(results[True], results[False])


def test_joint_step_largest_loss_is_cross_entropy(data):
    net = tiny_resnet20()
    net.train()
    x, y = data.x_train[:16], data.y_train[:16]
    full = net.full_spec()
    with torch.no_grad():
        expect = torch.nn.functional.cross_entropy(net(x), y).item()
    # BN in train mode uses batch statistics, so the pre-step forward equals the step's forward.
    loss = joint_step(net, make_optimizer(net, 0.0), x, y, [net.uniform_spec(0.5, "h"), full])
    assert loss == pytest.approx(expect, rel=1e-5)


def test_sandwich_sampler_keeps_extremes_and_is_a_function_of_step():
    net = tiny_resnet20()
    specs = [net.uniform_spec(r, f"r{i}") for i, r in enumerate((1.0, 0.8, 0.6, 0.5, 0.4, 0.25))]
    sample = sandwich_sampler(specs, 2, seed=3)
    seen = set()
    for step in range(20):
        picked = sample(step)
        assert [s.name for s in picked] == [s.name for s in sample(step)]
        assert picked[0].name == "r0" and picked[-1].name == "r5" and len(picked) == 4
        assert len({s.name for s in picked}) == 4
        seen.update(s.name for s in picked[1:-1])
    assert seen == {"r1", "r2", "r3", "r4"}
    assert [s.name for s in sandwich_sampler(specs[:3], 2, 0)(5)] == ["r0", "r1", "r2"]


def test_train_epochs_learns_and_is_deterministic(data):
    cfg = _cfg()
    finals = []
    for _ in range(2):
        net = tiny_resnet20(seed=1)
        before = evaluate(net, None, data.x_val, data.y_val)
        meter = ComputeMeter()
        stats = train_epochs(net, data, fixed_sampler([net.full_spec()]), 5, cfg, None, meter, warmup_epochs=0.5)
        assert stats.steps == 5 * (512 // 64) == meter.steps
        after = evaluate(net, None, data.x_val, data.y_val)
        assert after > max(before, 10.0) + 30 and after > 50  # well above chance (10 classes)
        finals.append(torch.cat([t.flatten().float() for t in net.model.state_dict().values()]))
    assert torch.equal(finals[0], finals[1])


def test_train_epochs_resume_from_epoch_matches(data):
    cfg = _cfg()
    net_a = tiny_resnet20(seed=2)
    train_epochs(net_a, data, fixed_sampler([net_a.full_spec()]), 2, cfg)
    net_b = tiny_resnet20(seed=2)
    saved = {}

    def stop_after_first(epoch, opt):
        saved["model"] = {k: v.clone() for k, v in net_b.model.state_dict().items()}
        saved["opt"] = opt.state_dict()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_epochs(net_b, data, fixed_sampler([net_b.full_spec()]), 2, cfg, on_epoch_end=stop_after_first)
    net_c = tiny_resnet20(seed=99)
    net_c.model.load_state_dict(saved["model"])
    opt = make_optimizer(net_c, cfg.lr, cfg.momentum, cfg.weight_decay)
    opt.load_state_dict(saved["opt"])
    train_epochs(net_c, data, fixed_sampler([net_c.full_spec()]), 2, cfg, optimizer=opt, start_epoch=1)
    for (k, a), b in zip(net_a.model.state_dict().items(), net_c.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_calibrate_stores_changed_statistics(data):
    net = tiny_resnet20()
    train_epochs(net, data, fixed_sampler([net.full_spec()]), 1, _cfg())
    spec = net.uniform_spec(0.5, "half")
    batches = calibration_batches(data, 3, 64, seed=0)
    assert len(batches) == 3 and all(len(b) == 64 for b in batches)
    assert torch.equal(batches[0], calibration_batches(data, 3, 64, seed=0)[0])
    meter = ComputeMeter()
    calibrate(net, [spec], batches, meter)
    assert net.has_bn_stats("half")
    stats = net.bn_stats["half"]["bn1"]
    shared = net.model.bn1.running_mean[: stats["mean"].numel()]
    assert not torch.allclose(stats["mean"], shared)
    assert meter.other_macs == 3 * 64 * spec.macs


def test_generators_are_derived_per_key():
    a = torch.rand(3, generator=make_generator(0, "x", 1))
    assert torch.equal(a, torch.rand(3, generator=make_generator(0, "x", 1)))
    assert not torch.equal(a, torch.rand(3, generator=make_generator(0, "x", 2)))
    assert not torch.equal(a, torch.rand(3, generator=make_generator(1, "x", 1)))


@pytest.mark.parametrize("loop", ["epochs", "steps"])
def test_both_training_loops_stop_on_a_non_finite_loss(data, loop):
    net = tiny_resnet20()
    with torch.no_grad():
        net.model.fc.weight.fill_(float("nan"))
    cfg = _cfg()
    sampler = fixed_sampler([net.full_spec()])
    with pytest.raises(FloatingPointError, match="loss became nan at step 0"):
        if loop == "epochs":
            train_epochs(net, data, sampler, 1, cfg, phase="p")
        else:
            train_steps(net, data, sampler, 3, cfg, lr=0.1, phase="p")
