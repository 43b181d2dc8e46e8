from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from slimrt.cli.app import app
from slimrt.train import load_checkpoint
from slimrt.train.data import load_dataset
from slimrt.train.loops import evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_writes_a_checkpoint_with_nested_subnets_and_accuracies(tmp_path, tiny_config):
    cfg = tiny_config()
    out = tmp_path / "model.pt"
    args = ["train", "--arch", "resnet20", "--data", "synthetic", "--config", str(cfg), "--limit-train", "256",
            "--pretrain-epochs", "2", "--epochs", "1", "--subnets", "3", "--min-macs", "0.3", "--batch-size", "64",
            "--lr", "0.1", "--seed", "3", "--threshold", "0.5", "--out", str(out), "--json"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout[res.stdout.index("{"):])
    assert payload["method"] == "progressive" and payload["out"] == str(out)
    ck = load_checkpoint(out)
    assert len(ck.subnets) == 3 and ck.config["seed"] == 3 and ck.config["threshold"] == 0.5
    assert ck.config["noise_steps"] == 8  # the TOML value reached the run
    for a, b in zip(ck.subnets, ck.subnets[1:], strict=False):
        assert b.nested_in(a) and b.macs < a.macs
    report = ck.extra["report"]
    assert report["finetunes"] == sum(c["finetuned"] for c in report["candidates"])
    assert [s["name"] for s in payload["subnets"]] == [s.name for s in ck.subnets]
    # The stored weights, channel order and per-sub-net BN statistics reproduce the recorded test accuracy.
    net = ck.dynamic_net()
    data = load_dataset("synthetic", val_size=200, seed=3)
    for s in ck.subnets:
        assert s.val_accuracy is not None and 0 <= s.test_accuracy <= 100
        assert evaluate(net, s, data.x_test, data.y_test) == pytest.approx(s.test_accuracy)


def test_train_table_output_and_user_errors(tmp_path, tiny_config):
    cfg = tiny_config()
    out = tmp_path / "m.pt"
    args = ["train", "--data", "synthetic", "--config", str(cfg), "--limit-train", "128", "--pretrain-epochs", "1",
            "--epochs", "0", "--subnets", "2", "--min-macs", "0.5", "--batch-size", "64", "--ranking", "l1",
            "--no-reselect", "--no-distill", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "MACs %" in res.stdout and "test acc %" in res.stdout and "fine-tunes" in res.stdout
    ck = load_checkpoint(out)
    assert ck.config["ranking"] == "l1" and ck.config["reselect"] is False and ck.config["distill"] is False
    assert [s.name for s in ck.subnets][0] == "m100"

    bad = CliRunner().invoke(app, ["train", "--data", "synthetic", "--ranking", "magic", "--out", str(out)])
    assert bad.exit_code != 0 and "ranking" in str(bad.exception)


def test_usnet_min_width_reaches_the_run(tmp_path, tiny_config):
    out = tmp_path / "us.pt"
    args = ["train", "--method", "usnet", "--usnet-min-width", "0.125", "--data", "synthetic", "--config",
            str(tiny_config()), "--limit-train", "128", "--pretrain-epochs", "1", "--epochs", "1", "--subnets", "2",
            "--min-macs", "0.02", "--batch-size", "64", "--out", str(out), "--json"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(out)
    assert ck.config["usnet_min_width"] == 0.125
    assert list(ck.extra["report"]["width_range"]) == [0.125, 1.0]
    net = ck.dynamic_net()
    assert ck.subnets[-1].macs < net.uniform_spec(0.25, "q").macs  # served below the default range's 1/4 width

    bad = CliRunner().invoke(app, ["train", "--data", "synthetic", "--usnet-min-width", "0.125", "--out", str(out)])
    assert bad.exit_code != 0 and "usnet_min_width applies to method 'usnet'" in str(bad.exception)


def test_min_units_keeps_every_width_a_multiple_of_the_group_size(tmp_path, tiny_config):
    """The tiny net's 8-channel groups get units of 2 by default (8 // min_units 4); --min-units 1 makes them 4."""
    out = tmp_path / "a.pt"
    args = ["train", "--data", "synthetic", "--config", str(tiny_config()), "--limit-train", "128",
            "--pretrain-epochs", "1", "--epochs", "0", "--subnets", "3", "--min-macs", "0.2", "--batch-size", "64",
            "--min-units", "1", "--keep-full", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(out)
    assert ck.config["min_units"] == 1 and ck.config["group_size"] == 4
    assert ck.config["keep_full"] is True and ck.subnets[0].macs == ck.dynamic_net().full_spec().macs
    widths = [w for s in ck.subnets for w in s.widths.values()]
    assert all(w % 4 == 0 for w in widths) and min(widths) == 4, widths
    assert ck.subnets[-1].macs < 0.5 * ck.subnets[0].macs

    bad = CliRunner().invoke(app, ["train", "--data", "synthetic", "--min-units", "0", "--out", str(out)])
    assert bad.exit_code != 0 and "min_units" in str(bad.exception)


def test_latency_table_calibrated_on_whole_networks(tmp_path):
    pytest.importorskip("onnxruntime")
    import torch

    from slimrt.cli.latency_table import calibration_widths
    from slimrt.models import create_model
    from slimrt.schema import LatencyTable
    from slimrt.train import DynamicNet

    net = DynamicNet(create_model("resnet20", in_channels=1, num_classes=10), torch.zeros(1, 1, 8, 8))
    nets = calibration_widths(net, 7)
    groups = {g.name: g.channels for g in net.prunable_groups}
    assert len(nets) == 7 and all(set(w) == set(groups) for w in nets)
    uniform = nets[:4]  # 16..58 of the widest 64 channels, every group in proportion (1-channel steps)
    assert [w["layer3.0.conv1"] for w in uniform] == [16, 28, 40, 52]
    assert all(w["conv1"] == -(-w["layer3.0.conv1"] * 16 // 64) for w in uniform)
    assert any(w["layer3.0.conv1"] % 8 for w in uniform)  # unaligned networks too: the fit needs them
    assert all(w[g] % 4 == 0 and 0 < w[g] <= groups[g] for w in nets[4:] for g in w)  # random, on the unit grid
    table = tmp_path / "t.json"
    res = CliRunner().invoke(app, ["latency-table", "--arch", "resnet20", "--in-channels", "1", "--image-size", "8",
                                   "--runs", "3", "--threads", "1", "--calibrate", "7", "--fit", "best",
                                   "-o", str(table)])  # fmt: skip
    assert res.exit_code == 0, res.output
    t = LatencyTable.model_validate_json(table.read_text())
    # on real (noisy) timings a fit may be rejected (a scale <= 0): the other one, or the two-point calibration, stays
    if t.fit is not None:
        # full + 7 calibration networks, + the plain-layout network where this CPU has a blocked layout
        assert t.fit["networks"] == 8 + (t.plain_widths is not None)
        if t.fit["kind"] == "stages":  # resnet20 at 8x8: three resolution stages
            assert set(t.stage_scales) == {"8x8", "4x4", "2x2"} and t.align is None and "stage-scale fit" in res.output
        else:
            assert t.fit["kind"] == "alignment" and t.stage_scales is None
            assert t.align in (8, 16) and t.aligned_scale > 0 and "alignment fit" in res.output
        assert 0 < t.predict_ms({}) < 100
    else:
        assert t.align is None and t.aligned_scale is None and t.stage_scales is None
    res = CliRunner().invoke(app, ["latency-table", "--arch", "resnet20", "--calibrate", "-1", "-o", str(table)])
    assert res.exit_code != 0 and "--calibrate" in res.output
    for args, says in ((["--fit", "stages"], "give --calibrate N"), (["--calibrate", "7", "--fit", "magic"],
                                                                      "--fit must be one of align, stages, best")):
        res = CliRunner().invoke(app, ["latency-table", "--arch", "resnet20", *args, "-o", str(tmp_path / "no.json")])
        assert res.exit_code != 0 and says in str(res.exception) and not (tmp_path / "no.json").exists(), res.output


def test_latency_table_then_train_with_latency_cost(tmp_path):
    pytest.importorskip("onnxruntime")
    table = tmp_path / "t.json"
    res = CliRunner().invoke(app, ["latency-table", "--arch", "resnet20", "--in-channels", "1", "--image-size", "8",
                                   "--runs", "2", "--threads", "1", "-o", str(table)])  # fmt: skip
    assert res.exit_code == 0, res.output
    payload = json.loads(table.read_text())
    assert payload["kind"] == "latency-table" and payload["input_shape"] == [1, 8, 8] and payload["fixed_ms"] > 0
    out = tmp_path / "model.pt"
    args = ["train", "--arch", "resnet20", "--data", "synthetic-1x8x8", "--limit-train", "256", "--val-size", "100",
            "--pretrain-epochs", "1", "--epochs", "0", "--subnets", "2", "--ranking", "l1", "--cost", "latency",
            "--latency-table", str(table), "--latency-targets", "1,0.6", "--batch-size", "64", "--out", str(out),
            "--json"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(out)
    assert ck.config["cost"] == "latency" and ck.extra["latency_table"]["kind"] == "latency-table"
    report = ck.extra["report"]
    assert report["cost"] == "latency" and len(report["predicted_latency_ms"]) == 2
