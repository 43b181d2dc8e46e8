"""The whole pipeline through the CLI on real Fashion-MNIST files: train -> export -> verify -> bench -> info,
then SlimRuntime reuses the stored latency profile and reproduces the recorded test accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from slimrt import SlimRuntime
from slimrt.cli.app import app
from slimrt.train.data import load_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _json(res) -> dict:
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout[res.stdout.index("{"):])


@pytest.mark.slow
def test_train_export_bench_run(tmp_path, tiny_config):
    runner = CliRunner()
    cfg = tiny_config(val_size=500, augment=None, noise_batch_size=64, finetune_steps=5, calib_batches=4,
                      macs_step=0.25)
    model = tmp_path / "model.pt"
    art = tmp_path / "tiny.slim"
    trained = _json(runner.invoke(app, [
        "train", "--arch", "resnet20", "--data", "fashion-mnist", "--config", str(cfg), "--limit-train", "1024",
        "--pretrain-epochs", "1", "--epochs", "1", "--subnets", "3", "--min-macs", "0.3", "--batch-size", "64",
        "--seed", "0", "--out", str(model), "--json"]))  # fmt: skip
    assert len(trained["subnets"]) == 3

    exported = _json(runner.invoke(app, ["export", str(model), "-o", str(art), "--json"]))
    assert exported["ok"] and all(s["max_abs_diff"] <= 1e-4 for s in exported["subnets"])
    assert runner.invoke(app, ["verify", str(art)]).exit_code == 0

    bench_json = tmp_path / "bench.json"
    plot = tmp_path / "plot.png"
    res = runner.invoke(app, ["bench", str(art), "--device", "cpu", "--runs", "30", "--out", str(bench_json),
                              "--plot", str(plot)])  # fmt: skip
    assert res.exit_code == 0, res.output
    bench = json.loads(bench_json.read_text())
    assert [s["name"] for s in bench["subnets"]] == [s["name"] for s in trained["subnets"]]
    assert plot.stat().st_size > 10_000

    info = _json(runner.invoke(app, ["info", str(art), "--json"]))
    assert len(info["latency_profiles"]) == 1

    data = load_dataset("fashion-mnist")
    x = data.x_test.numpy().astype(np.float32)
    y = data.y_test.numpy()
    with SlimRuntime(art, budget_ms=1e3, device="cpu") as rt:
        assert rt.latency_source == "stored"  # bench's profile is reused: nothing re-measured
        full = rt.manifest.subnets[0]
        assert rt.active_name == full.name
        correct = sum(int(np.argmax(rt(x[i : i + 1])[0]) == y[i]) for i in range(len(y)))
    assert 100.0 * correct / len(y) == pytest.approx(full.test_accuracy, abs=0.011)
