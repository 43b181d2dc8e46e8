from __future__ import annotations

import math

import pytest
import torch
from nets import tiny_resnet20

from slimrt.errors import ConfigError
from slimrt.train import DynamicNet, load_checkpoint
from slimrt.train.config import SearchConfig
from slimrt.train.data import load_dataset
from slimrt.train.loops import calibrate, calibration_batches, evaluate, fixed_sampler, train_epochs
from slimrt.train.methods.progressive import (
    group_units,
    min_keep,
    needs_finetune,
    next_candidate,
    progressive_search,
    step_target,
    unit_size,
)
from slimrt.train.ranking import RankContext, Unit, bn_rank, l1_rank, noise_rank, random_rank, unit_macs
from slimrt.train.trainer import run_training

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

TINY = {
    "arch": "resnet20", "arch_kwargs": {"widths": [8, 8, 16]}, "dataset": "synthetic", "limit_train": 256,
    "val_size": 200, "batch_size": 64, "pretrain_epochs": 2, "epochs": 1, "lr": 0.1, "augment": False,
    "subnets": 3, "min_macs": 0.3, "macs_step": 0.2, "max_cut": 1.0, "group_size": 4, "noise_steps": 10,
    "noise_batch_size": 32, "finetune_steps": 4, "calib_batches": 2, "seed": 0,
}  # fmt: skip




@pytest.fixture(scope="module")
def trained(data):
    net = tiny_resnet20(1)
    cfg = SearchConfig.build({"batch_size": 64, "lr": 0.1, "augment": False})
    train_epochs(net, data, fixed_sampler([net.full_spec()]), 5, cfg)
    return net.eval()


def _clone(net: DynamicNet) -> DynamicNet:
    other = tiny_resnet20(0)
    other.model.load_state_dict(net.model.state_dict())
    return other.eval()


# ------------------------------------------------------------------------------------------------ units and ranking


def test_unit_sizes_and_units():
    assert unit_size(64, 8) == 8 and unit_size(16, 8) == 4 and unit_size(8, 8) == 2 and unit_size(3, 8) == 1
    assert unit_size(20, 8, min_units=1) == 8
    assert min_keep(64, 8) == 8 and min_keep(64, 8, 0.3) == 24 and min_keep(4, 8) == 4
    net = tiny_resnet20()
    spec = net.spec({"layer3.1.conv1": 12})
    units = group_units(net, spec, group_size=4)
    by_group: dict[str, list[Unit]] = {}
    for u in units:
        by_group.setdefault(u.group, []).append(u)
    assert set(by_group) == {g.name for g in net.prunable_groups}
    assert [(u.start, u.stop) for u in by_group["layer3.1.conv1"]] == [(0, 4), (4, 8), (8, 12)]
    assert [(u.start, u.stop) for u in by_group["conv1"]] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    macs = unit_macs(net, spec, units)
    assert (macs > 0).all()
    drop = net.macs(spec) - net.spec({"layer3.1.conv1": 11}).macs
    assert macs[units.index(Unit("layer3.1.conv1", 8, 12))] == 4 * drop


def test_l1_matches_hand_computation(trained):
    net = trained
    spec = net.full_spec()
    units = [Unit("layer3.1.conv1", 0, 4), Unit("layer3.1.conv1", 4, 8), Unit("layer3.1.conv1", 8, 16)]
    scores = l1_rank(net, spec, units, RankContext())
    per_filter = net.model.layer3[1].conv1.weight.detach().abs().flatten(1).mean(1)
    mean = per_filter.mean()
    expect = [per_filter[0:4].mean() / mean, per_filter[4:8].mean() / mean, per_filter[8:16].mean() / mean]
    assert torch.allclose(scores.float(), torch.stack(expect), rtol=1e-5)
    gamma = (net.model.layer3[1].bn1.weight.detach().abs())
    assert torch.allclose(bn_rank(net, spec, units, RankContext()).float(),
                          torch.stack([gamma[0:4].mean(), gamma[4:8].mean(), gamma[8:16].mean()]), rtol=1e-5)


def test_zeroed_unit_ranks_last_for_l1_and_noise(trained, data):
    net = _clone(trained)
    spec = net.full_spec()
    units = group_units(net, spec, group_size=4)
    target = units.index(Unit("layer3.1.conv1", 4, 8))
    with torch.no_grad():  # make the unit irrelevant: its BN outputs are exactly zero
        net.model.layer3[1].bn1.weight[4:8] = 0
        net.model.layer3[1].bn1.bias[4:8] = 0
        net.model.layer3[1].conv1.weight[4:8] = 0
    ctx = RankContext(data=data, seed=0, key=0, noise_steps=40, batch_size=32)
    noise = noise_rank(net, spec, units, ctx)
    assert int(noise.argmin()) == target
    assert ctx.alphas is not None and ctx.alphas[target] == ctx.alphas.max() > 2 * ctx.alphas.median()
    l1 = l1_rank(net, spec, units, ctx)
    assert int(l1.argmin()) == target and l1[target] == 0
    # Weights are left untouched and trainable afterwards.
    assert all(p.requires_grad for p in net.parameters())
    assert torch.equal(net.model.layer3[1].bn1.weight[4:8], torch.zeros(4))
    r1, r2 = random_rank(net, spec, units, ctx), random_rank(net, spec, units, RankContext(seed=1))
    assert r1.shape == (len(units),) and not torch.equal(r1, r2)
    with pytest.raises(ConfigError, match="outside"):
        l1_rank(net, net.spec({"layer3.1.conv1": 4}), units, ctx)


# ------------------------------------------------------------------------------------------------------- removal


def test_next_candidate_reorders_within_prefix_and_removes_a_step(trained, data):
    net = _clone(trained)
    cfg = SearchConfig.build(TINY)
    calib = calibration_batches(data, 2, 64, seed=0)
    full = net.full_spec()
    specs = [net.full_spec("c00")]
    calibrate(net, specs, calib)
    x = data.x_val[:64]
    for i in range(1, 4):
        cur = specs[-1]
        with torch.no_grad(), net.use(cur):
            before = net(x)
        earlier = {s.name: net.bn_stats[s.name] for s in specs}
        units = group_units(net, cur, cfg.group_size)
        scores = random_rank(net, cur, units, RankContext(seed=0, key=i))
        step = cfg.macs_step * full.macs
        new, removed = next_candidate(net, cur, units, scores, target_macs=cur.macs - step, name=f"c{i:02d}", cfg=cfg)
        assert removed > 0
        assert new.macs <= cur.macs - step
        assert new.nested_in(cur) and not cur.nested_in(new)
        with torch.no_grad(), net.use(cur):
            assert torch.allclose(net(x), before, atol=1e-5)  # reordering inside the prefix changes nothing
        assert all(s.name in net.bn_stats for s in specs)  # earlier candidates keep their BN statistics
        assert earlier.keys() <= net.bn_stats.keys()
        calibrate(net, [new], calib)
        specs.append(new)
    # Every candidate is a prefix: the extracted module computes the same as the sliced dynamic net.
    for s in specs:
        with torch.no_grad(), net.use(s):
            ref = net(x)
        assert torch.allclose(net.extract(s)(x), ref, atol=1e-5)


def test_removal_respects_the_minimum_width(trained):
    net = _clone(trained)
    cfg = SearchConfig.build({**TINY, "min_width": 0.5})
    cur = net.full_spec()
    units = group_units(net, cur, cfg.group_size)
    new, removed = next_candidate(net, cur, units, torch.zeros(len(units)), target_macs=0, name="tiny", cfg=cfg)
    assert removed > 0
    for g in net.prunable_groups:
        assert new.widths[g.name] == math.ceil(g.channels / 2)


# --------------------------------------------------------------------------------------------- pure decisions


def test_step_target_caps_relative_cuts():
    cfg = SearchConfig.build({"macs_step": 0.05, "max_cut": 0.25, "min_macs": 0.1})
    assert step_target(1000, 1000, cfg) == 950  # 5% of full
    assert step_target(160, 1000, cfg) == 120  # 25% of 160 is less than 50
    assert step_target(110, 1000, cfg) == 100  # never below min_macs
    assert step_target(500, 1000, cfg.updated(max_cut=1.0, macs_step=0.3)) == 200


def test_needs_finetune_decision():
    assert needs_finetune(90.0, 88.9, 1.0)
    assert not needs_finetune(90.0, 89.0, 1.0)  # exactly the threshold: no
    assert not needs_finetune(90.0, 91.0, 0.0)
    assert needs_finetune(90.0, 89.99, 0.0)
    assert not needs_finetune(90.0, 10.0, math.inf)
    assert needs_finetune(90.0, 95.0, 1.0, always=True)
    assert not needs_finetune(90.0, 10.0, 1.0, always=True, steps=0)


# --------------------------------------------------------------------------------------------------- real search


def _search(trained, data, **kw):
    net = _clone(trained)
    cfg = SearchConfig.build({**TINY, **kw})
    specs, report = progressive_search(net, data, cfg)
    return net, cfg, specs, report


def test_search_produces_nested_candidates_and_final_prefix_subnets(trained, data):
    net, cfg, specs, report = _search(trained, data, threshold=math.inf)
    cands = [c.spec for c in report.candidates]
    full = net.macs()
    assert cands[0].macs == full and cands[-1].macs <= cfg.min_macs * full
    for a, b in zip(cands, cands[1:], strict=False):
        assert b.nested_in(a)
        assert b.macs <= step_target(a.macs, full, cfg)
    assert report.finetunes == 0
    assert len(specs) == cfg.subnets and [s.name for s in specs] == report.final_names
    assert specs[0].macs == full
    for a, b in zip(specs, specs[1:], strict=False):
        assert b.nested_in(a) and b.macs < a.macs
    x, y = data.x_test, data.y_test
    for s in specs:
        assert s.val_accuracy is not None and s.test_accuracy is not None
        assert net.has_bn_stats(s.name)
        sub = net.extract(s)
        with torch.no_grad():
            acc = 100.0 * int((sub(x).argmax(1) == y).sum()) / len(y)
        assert acc == pytest.approx(s.test_accuracy, abs=1e-9)
        assert evaluate(net, s, x, y) == pytest.approx(s.test_accuracy)
    assert set(net.bn_stats) == {s.name for s in specs}
    assert report.compute["train_macs"] > 0 and report.timings["rank"] > 0


def test_threshold_controls_finetunes(trained, data):
    _, _, _, never = _search(trained, data, threshold=100.0, epochs=0)
    assert never.finetunes == 0 and not any(c.finetuned for c in never.candidates)
    _, _, _, always = _search(trained, data, finetune_always=True, epochs=0)
    assert always.finetunes == len(always.candidates) - 1
    assert all(c.finetuned and c.val_after_finetune is not None for c in always.candidates[1:])
    _, _, _, zero = _search(trained, data, threshold=0.0, epochs=0)
    drops = 0
    for prev, cur in zip(zero.candidates, zero.candidates[1:], strict=False):
        before = prev.val_after_finetune if prev.finetuned else prev.val_accuracy
        drops += cur.val_accuracy < before
        assert cur.finetuned == (cur.val_accuracy < before)
    assert zero.finetunes == drops


# ------------------------------------------------------------------------------------- determinism and resume


def _state(path):
    ck = load_checkpoint(path)
    return ck, torch.cat([t.flatten().float() for t in ck.state_dict.values()])


def test_seeded_runs_are_identical_and_resume_reproduces_them(tmp_path):
    cfg_a = SearchConfig.build({**TINY, "epochs": 2, "out": str(tmp_path / "a.pt")})
    cfg_b = cfg_a.updated(out=str(tmp_path / "b.pt"))
    res_a = run_training(cfg_a)
    run_training(cfg_b)
    ck_a, w_a = _state(tmp_path / "a.pt")
    ck_b, w_b = _state(tmp_path / "b.pt")
    assert ck_a.subnets == ck_b.subnets and torch.equal(w_a, w_b)
    assert [s.name for s in res_a.subnets] == [s.name for s in ck_a.subnets]
    assert not (tmp_path / "a.pt.resume.pt").exists()

    cfg_c = cfg_a.updated(out=str(tmp_path / "c.pt"))
    events: list[str] = []
    stops = iter(["pretrain-epoch-1", "search-3", "finetune-1"])
    stop = [next(stops)]

    def hook(event: str) -> None:
        events.append(event)
        if event == stop[0]:
            stop[0] = next(stops, "never")
            raise KeyboardInterrupt(event)

    for expected in ("pretrain-epoch-1", "search-3", "finetune-1"):
        with pytest.raises(KeyboardInterrupt, match=expected):
            run_training(cfg_c.updated(resume=True), hook=hook)
        assert (tmp_path / "c.pt.resume.pt").exists()
    res_c = run_training(cfg_c.updated(resume=True), hook=hook)
    assert res_c.resumed
    ck_c, w_c = _state(tmp_path / "c.pt")
    assert ck_c.subnets == ck_a.subnets and torch.equal(w_c, w_a)
    assert ck_c.channel_order == ck_a.channel_order
    assert "pretrained" in events and "finetune-2" in events


def test_resume_refuses_changed_settings(tmp_path):
    cfg = SearchConfig.build({**TINY, "out": str(tmp_path / "m.pt"), "resume": True})

    def stop(event: str) -> None:
        if event == "pretrained":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, hook=stop)
    with pytest.raises(ConfigError, match="subnets"):
        run_training(cfg.updated(subnets=2))


def test_init_starts_from_given_weights_and_skips_pretraining(tmp_path, trained):
    from slimrt.errors import CheckpointError

    init = tmp_path / "full.pt"
    torch.save({"state_dict": trained.model.state_dict()}, init)
    cfg = SearchConfig.build({**TINY, "init": str(init), "epochs": 0, "threshold": math.inf, "subnets": 2,
                              "limit_train": 512, "out": str(tmp_path / "m.pt")})  # fmt: skip
    res = run_training(cfg)
    assert "pretrain" not in res.compute["by_phase"] and res.compute["train_macs"] == 0
    ck = load_checkpoint(tmp_path / "m.pt")
    # No training happened: the weights are the given ones, channels only permuted within each group.
    out_order, in_order = ck.channel_order["layer3.1.conv1"], ck.channel_order["layer3.0.downsample.0"]
    expect = trained.model.layer3[1].conv1.weight[out_order][:, in_order]
    assert torch.equal(ck.state_dict["layer3.1.conv1.weight"], expect)
    assert torch.equal(ck.state_dict["fc.bias"], trained.model.fc.bias)
    with pytest.raises(CheckpointError, match="no such file"):
        run_training(cfg.updated(force=True, init=str(tmp_path / "missing.pt")))
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        run_training(cfg.updated(force=True, init=str(tmp_path / "bad.pt")))


def test_budget_sets_final_epochs_from_what_the_search_left(tmp_path):
    """``budget_macs``: the final fine-tune gets the whole epochs that fit after the search's spending."""
    from slimrt.train.loops import sandwich_sampler, steps_per_epoch

    base = SearchConfig.build({**TINY, "pretrain_epochs": 0, "out": str(tmp_path / "a.pt")})
    probe = run_training(base.updated(epochs=0))
    spent = probe.compute["train_macs"] + probe.compute["by_phase"].get("rank", 0)
    data = load_dataset("synthetic", val_size=200, limit_train=256, seed=0)
    sampler = sandwich_sampler(probe.subnets, base.sampled_subnets, base.seed, phase="finetune")
    per_epoch = sum(3 * base.batch_size * sum(s.macs for s in sampler(t)) for t in range(steps_per_epoch(data, 64)))
    res = run_training(base.updated(budget_macs=spent + 3 * per_epoch + per_epoch // 2, out=str(tmp_path / "b.pt")))
    assert res.compute["by_phase"]["finetune"] == 3 * per_epoch  # 3.5 epochs left: rounded down to 3
    assert res.report["compute"]["train_macs"] + res.compute["by_phase"].get("rank", 0) <= spent + 3.5 * per_epoch
    small = run_training(base.updated(budget_macs=1, out=str(tmp_path / "c.pt")))
    assert small.compute["by_phase"]["finetune"] == per_epoch  # nothing left: still one epoch


def test_usnet_resumes_after_each_epoch_identically(tmp_path):
    cfg = SearchConfig.build({**TINY, "method": "usnet", "epochs": 3, "out": str(tmp_path / "a.pt")})
    run_training(cfg)
    _, w_a = _state(tmp_path / "a.pt")
    cfg_b = cfg.updated(out=str(tmp_path / "b.pt"), resume=True)
    stops = iter(["usnet-epoch-1", "usnet-epoch-2"])
    stop = [next(stops)]

    def hook(event: str) -> None:
        if event == stop[0]:
            stop[0] = next(stops, "never")
            raise KeyboardInterrupt(event)

    for expected in ("usnet-epoch-1", "usnet-epoch-2"):
        with pytest.raises(KeyboardInterrupt, match=expected):
            run_training(cfg_b, hook=hook)
    res = run_training(cfg_b, hook=hook)
    assert res.resumed
    ck_b, w_b = _state(tmp_path / "b.pt")
    assert torch.equal(w_a, w_b)
    assert ck_b.subnets == load_checkpoint(tmp_path / "a.pt").subnets


def test_supernet_warm_start_resumes_after_each_epoch_identically(tmp_path):
    """An interruption inside the supernet warm start loses at most the current epoch, and the resumed run ends with
    the same weights and sub-nets as an uninterrupted one (no second channel reorder, the optimizer restored)."""
    cfg = SearchConfig.build({**TINY, "supernet_epochs": 2, "sampled_subnets": 1, "out": str(tmp_path / "a.pt")})
    events: list[str] = []
    run_training(cfg, hook=events.append)
    assert "supernet-1" in events and "supernet-2" in events
    ck_a, w_a = _state(tmp_path / "a.pt")
    cfg_b = cfg.updated(out=str(tmp_path / "b.pt"), resume=True)

    def hook(event: str) -> None:
        if event == "supernet-1":
            raise KeyboardInterrupt(event)

    with pytest.raises(KeyboardInterrupt, match="supernet-1"):
        run_training(cfg_b, hook=hook)
    res = run_training(cfg_b)
    assert res.resumed
    ck_b, w_b = _state(tmp_path / "b.pt")
    assert torch.equal(w_a, w_b) and ck_b.subnets == ck_a.subnets and ck_b.channel_order == ck_a.channel_order
