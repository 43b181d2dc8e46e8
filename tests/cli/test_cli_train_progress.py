"""`slimrt train` writes readable progress into a log file; `--dry-run` counts the steps without training."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from typer.testing import CliRunner

from slimrt.cli.app import app


def test_train_with_stderr_in_a_file_writes_periodic_progress_lines(tmp_path, tiny_config):
    cfg = tiny_config(val_size=64, noise_steps=4, finetune_steps=2, calib_batches=1, macs_step=0.3)
    log = tmp_path / "train.log"
    env = {**os.environ, "SLIMRT_PROGRESS_INTERVAL": "0", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "slimrt", "train", "--data", "synthetic-1x8x8", "--config", str(cfg),
            "--limit-train", "192", "--pretrain-epochs", "2", "--epochs", "1", "--subnets", "2", "--min-macs", "0.5",
            "--batch-size", "32", "--out", str(tmp_path / "m.pt"), "--json"]  # fmt: skip
    with open(log, "w") as err:
        res = subprocess.run(args, stdout=subprocess.PIPE, stderr=err, env=env, text=True, timeout=300, check=False)
    text = log.read_text()
    assert res.returncode == 0, text
    lines = text.splitlines()
    step = re.compile(r"^\d\d:\d\d:\d\d pretrain (\d+)/12 \(\d+%\) epoch \d/2 loss \d+\.\d+ \| elapsed \d:\d\d:\d\d")
    assert len([x for x in lines if step.match(x) and "ETA" in x]) >= 5, text
    assert any(x.startswith(tuple("0123456789")) and " search " in x and "| started" in x for x in lines)
    assert any(" finetune " in x and "| done" in x for x in lines)
    assert "search steps for 192 training images: noise_steps 4, finetune_steps 2, calib_batches 1" in text
    assert "\x1b[" not in text  # plain text, no terminal escapes
    assert '"subnets"' in res.stdout  # the result still goes to stdout


def test_dry_run_counts_steps_per_phase_without_training(tmp_path, tiny_config):
    cfg = tiny_config(val_size=64, noise_steps=4, finetune_steps=2, calib_batches=1, macs_step=0.3)
    out = tmp_path / "m.pt"
    args = ["train", "--data", "synthetic-1x8x8", "--config", str(cfg), "--limit-train", "192", "--pretrain-epochs",
            "2", "--epochs", "3", "--batch-size", "32", "--min-macs", "0.4", "--out", str(out), "--dry-run"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "192 training images, 6 steps per epoch" in res.stdout
    assert "pretrain: 12 steps of 32 images" in res.stdout
    assert "search ranking: up to 8 steps of 32 images" in res.stdout  # 2 candidates x 4 noise steps
    assert "finetune: 18 steps of 32 images" in res.stdout
    assert "estimated total" in res.stdout and "s per full-network training step" in res.stdout
    assert not out.exists()
    res = CliRunner().invoke(app, [*args, "--json", "--init", str(tmp_path / "w.pt")])
    assert res.exit_code == 0, res.output
    assert '"steps": 0' in res.stdout and "--init" in res.stdout


def test_dry_run_shows_search_steps_scaled_to_the_data_unless_given(tmp_path, tiny_config):
    cfg = tiny_config(val_size=64, noise_steps=None, finetune_steps=None, calib_batches=None, macs_step=0.3,
                      threshold=0.0)  # fmt: skip
    args = ["train", "--data", "synthetic-1x8x8", "--config", str(cfg), "--limit-train", "192", "--batch-size", "32",
            "--min-macs", "0.4", "--out", str(tmp_path / "m.pt"), "--dry-run"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    # 192 images: noise 2 epochs of 32 = 12 -> floor 20; fine-tune 2 epochs of 6 steps = 12; calibration one pass of 6
    assert "noise_steps 20 (auto), finetune_steps 12 (auto), calib_batches 6 (auto)" in res.stdout, res.stdout
    assert "search ranking: up to 40 steps of 32 images" in res.stdout and "auto: at most 2 epochs" in res.stdout
    assert "search fine-tunes: up to 24 steps of 32 images" in res.stdout
    res = CliRunner().invoke(app, [*args, "--noise-steps", "7", "--finetune-steps", "100", "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["search_steps"] | {"auto": None} == {"noise_steps": 7, "finetune_steps": 100, "calib_batches": 6,
                                                     "train_images": 192, "auto": None}  # fmt: skip
    assert plan["search_steps"]["auto"] == ["calib_batches"]
