"""End to end on real image files: Fashion-MNIST written as PNGs into class folders -> train -> export -> serve,
then a second run starting from a plain ``state_dict`` (DDP-prefixed, in a training script's wrapper)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from slimrt import SlimRuntime
from slimrt.cli.app import app
from slimrt.errors import DataError
from slimrt.train import load_checkpoint
from slimrt.train.data import find_fashion_mnist, load_dataset, read_idx


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _png_folder(root: Path) -> Path:
    try:
        files = find_fashion_mnist()
    except DataError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    x, y = read_idx(files["train_images"], 3), read_idx(files["train_labels"], 1)
    names = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
    for split, lo, per_class in (("train", 0, 30), ("val", 5000, 10)):
        count = dict.fromkeys(range(10), 0)
        for i in range(lo, lo + 2000):
            c = int(y[i])
            if count[c] < per_class:
                (root / split / names[c]).mkdir(parents=True, exist_ok=True)
                Image.fromarray(x[i], "L").save(root / split / names[c] / f"{i:05d}.png")
                count[c] += 1
    return root


def _json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout[res.stdout.index("{"):])


@pytest.mark.slow
def test_png_class_folders_train_export_serve_and_plain_state_dict_init(tmp_path, tiny_config):
    folder = _png_folder(tmp_path / "fashion")
    assert len(list(folder.glob("train/*/*.png"))) == 300 and len(list(folder.glob("val/*/*.png"))) == 100
    cfg = tiny_config(val_size=60, augment=None, noise_steps=None, noise_batch_size=None, finetune_steps=None,
                      ranking="l1", threshold=float("inf"), macs_step=0.5, lr=0.1)
    runner = CliRunner()
    model = tmp_path / "model.pt"
    common = ["train", "--arch", "resnet20", "--data", str(folder), "--config", str(cfg), "--input-size", "16",
              "--epochs", "1", "--subnets", "2", "--min-macs", "0.5", "--batch-size", "16", "--json"]  # fmt: skip
    trained = _json(runner.invoke(app, [*common, "--pretrain-epochs", "6", "--crop-scale", "0.5,1", "--workers", "2",
                                        "--out", str(model)]))  # fmt: skip
    assert trained["dataset"] == str(folder.resolve()) and len(trained["subnets"]) == 2
    ck = load_checkpoint(model)
    assert ck.input_shape == (1, 16, 16)
    pre = ck.extra["image_folder"]
    assert pre["classes"][:2] == ["bag", "boot"] and pre["grayscale"] is True and pre["input_size"] == 16
    assert pre["train_augmentation"] == {"kind": "random-resized-crop", "scale": [0.5, 1.0], "ratio": [0.75, 4 / 3],
                                         "flip": True}  # fmt: skip

    art = tmp_path / "fashion.slim"
    exported = _json(runner.invoke(app, ["export", str(model), "-o", str(art), "--json"]))
    assert exported["ok"] and all(s["max_abs_diff"] <= 1e-4 for s in exported["subnets"])
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["input"]["shape"][1:] == [1, 16, 16]
    assert manifest["input"]["mean"] == pytest.approx(list(ck.mean)) and manifest["input"]["std"] == pytest.approx(
        list(ck.std))
    assert manifest["labels"] == pre["classes"] and len(manifest["labels"]) == manifest["output"]["shape"][-1] == 10
    assert manifest["input"]["preprocess"]["train_augmentation"] == pre["train_augmentation"]
    assert manifest["input"]["preprocess"]["grayscale"] is True
    shown = runner.invoke(app, ["info", str(art)])
    assert shown.exit_code == 0 and "labels (10): bag, boot, coat, dress" in shown.output, shown.output
    assert _json(runner.invoke(app, ["info", str(art), "--json"]))["manifest"]["labels"] == pre["classes"]

    data = load_dataset(str(folder), image_options={"input_size": 16, "mean": list(ck.mean), "std": list(ck.std)})
    x, y = data.x_test.numpy().astype(np.float32), data.y_test.numpy()
    with SlimRuntime(art, budget_ms=1e3, device="cpu") as rt:
        labels = rt.labels
        served, correct = set(), 0
        for i in range(len(y)):
            served.add(rt.active_name)
            correct += int(np.argmax(rt(x[i : i + 1])[0]) == y[i])
        # a roomy budget serves the most accurate sub-net throughout; with 300 training images that need not be the
        # largest one (on an Intel Xeon the half-MACs sub-net scored 53% against the full network's 50%)
        assert len(served) == 1, served
        best = next(s for s in rt.manifest.subnets if s.name in served)
    assert 100.0 * correct / len(y) == pytest.approx(best.test_accuracy, abs=1.01)  # <= 1 near-tie
    assert best.test_accuracy > 30  # learned something from the PNG files (chance: 10%)
    assert labels == pre["classes"] and data.preprocess["classes"] == labels  # index i means the folder labels[i]

    # Second run: your own weights as a training script saves them (plain state_dict, DDP prefix, wrapped).
    weights = tmp_path / "mine.pth"
    torch.save({"epoch": 3, "model": {f"module.{k}": v for k, v in ck.state_dict.items()}}, weights)
    model2 = tmp_path / "model2.pt"
    again = _json(runner.invoke(app, [*common, "--pretrain-epochs", "50", "--epochs", "0", "--init", str(weights),
                                      "--no-flip", "--out", str(model2)]))  # fmt: skip
    ck2 = load_checkpoint(model2)
    assert ck2.extra["image_folder"]["train_augmentation"]["flip"] is False and ck2.config["flip"] is False
    assert ck2.config["init"] == str(weights) and "pretrain" not in ck2.extra["timings"]  # 50 epochs skipped
    assert again["report"]["candidates"][0]["val_accuracy"] > 25  # the search started from the loaded weights
