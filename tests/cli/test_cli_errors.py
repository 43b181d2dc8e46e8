"""Every CLI error is one unwrapped line on stderr with a non-zero exit, checked before any work is done."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slimrt.cli.app import main


def _fail(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code not in (0, None)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_export_option_errors_are_one_line(capsys, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"not read: the options are checked first")
    assert "--opset 5" in _fail(capsys, ["export", str(model), "-o", str(tmp_path / "a.slim"), "--opset", "5"])
    assert "--atol -1.0" in _fail(capsys, ["export", str(model), "-o", str(tmp_path / "a.slim"), "--atol", "-1"])
    assert not (tmp_path / "a.slim").exists()


def test_train_device_and_out_checked_before_any_work(capsys, tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "such" / "data")  # reading it would fail: the --out check must come first
    out = tmp_path / "model.pt"
    assert "device must be" in _fail(capsys, ["train", "--device", "jetson", "--data", "synthetic", "--out", str(out)])
    assert "is a directory" in _fail(capsys, ["train", "--data", missing, "--out", str(tmp_path)])
    out.write_bytes(b"an earlier checkpoint")
    assert "pass --force" in _fail(capsys, ["train", "--data", missing, "--out", str(out)])
    assert out.read_bytes() == b"an earlier checkpoint"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "not a directory" in _fail(capsys, ["train", "--data", missing, "--out", str(blocker / "model.pt")])
    # with --force the --out check passes and the next problem (the data) is reported, still in one line
    assert "does not exist" in _fail(capsys, ["train", "--data", missing, "--out", str(out), "--force"])


@pytest.mark.parametrize("flag", ["--out", "--plot"])
def test_bench_output_checked_before_measuring(capsys, synthetic_artifact: Path, tmp_path: Path, flag: str) -> None:
    line = _fail(capsys, ["bench", str(synthetic_artifact), flag, str(tmp_path), "--runs", "5", "-q"])
    assert f"{flag} {tmp_path} is a directory" in line
    manifest = json.loads((synthetic_artifact / "manifest.json").read_text())
    assert manifest["latency"] == [] and not (synthetic_artifact / "latency").exists()  # nothing was measured


def test_long_errors_are_not_wrapped_on_a_pipe(capsys, tmp_path: Path) -> None:
    deep = tmp_path / ("a-long-folder-name-" * 6)
    deep.mkdir()
    line = _fail(capsys, ["verify", str(deep)])
    assert len(line) > 120 and "is not a slimrt artifact" in line


def test_usage_errors_are_one_line(capsys, synthetic_artifact: Path) -> None:
    assert "--bogus" in _fail(capsys, ["bench", str(synthetic_artifact), "--bogus"])


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    from slimrt.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "train", "--out", str(tmp_path)])


def test_files_honour_the_umask(tmp_path: Path) -> None:
    """Checkpoints and plots are ordinary files: 0666 minus the umask (mkstemp alone gives 0600)."""
    import torch

    from slimrt.plot import plot_accuracy_vs_latency
    from slimrt.schema import SubnetSpec
    from slimrt.train import DynamicNet
    from slimrt.train.checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        net = DynamicNet(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU()), torch.zeros(1, 1, 8, 8))
        spec = SubnetSpec(name="full", widths={}, macs=1, params=1)
        path = save_checkpoint(tmp_path / "model.pt", net=net, arch="x", arch_kwargs={}, subnets=[spec],
                               input_shape=(1, 8, 8), mean=[0.0], std=[1.0], dataset="synthetic", config={})
        assert path.stat().st_mode & 0o777 == 0o644
        png = plot_accuracy_vs_latency(["a", "b"], [2.0, 1.0], [90.0, 80.0], tmp_path / "plot.png")
        assert Path(png).stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_refused_init_is_one_line(tmp_path: Path) -> None:
    """A checkpoint carrying pickled code is refused in slimrt's one line, not torch's advice (weights_only=False)."""
    import argparse

    import torch

    from slimrt.errors import CheckpointError
    from slimrt.train import DynamicNet
    from slimrt.train.trainer import load_init

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": argparse.Namespace(x=1)}, evil)
    net = DynamicNet(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3)), torch.zeros(1, 1, 8, 8))
    with pytest.raises(CheckpointError) as info:
        load_init(net, evil)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and "carries pickled code" in msg and "weights_only" not in msg
