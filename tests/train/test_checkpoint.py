"""The model.pt checkpoint: full DynamicNet round trip, safe architecture rebuild, and every error path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from slimrt.errors import CheckpointError
from slimrt.models import create_model
from slimrt.train import DynamicNet, load_checkpoint, save_checkpoint
from slimrt.train.checkpoint import CHECKPOINT_FORMAT

SHAPE = (1, 16, 16)


class CustomThing:
    """A class the weights-only unpickler must refuse."""

    def __init__(self) -> None:
        self.value = 1


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


@pytest.fixture(scope="module")
def trained():
    """A resnet20 DynamicNet with non-trivial weights, a reordered group, and a calibrated half-width sub-net."""
    torch.manual_seed(0)
    net = DynamicNet(create_model("resnet20", in_channels=1, num_classes=4), torch.zeros(1, *SHAPE))
    x = torch.randn(32, *SHAPE)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(x + 0.5)  # move the shared BN statistics away from 0/1
    g = net.prunable_groups[0]
    net.reorder({g.name: torch.randperm(g.channels, generator=torch.Generator().manual_seed(1))})
    half = net.uniform_spec(0.5, "half").with_accuracy(val=81.5)
    quarter = net.uniform_spec(0.25, "quarter")
    net.calibrate_bn(half, [x[:16] * 2, x[16:] * 2])
    net.eval()
    return net, [quarter, net.full_spec(), half], x


def _save(net, specs, path, **overrides):
    kwargs = dict(
        net=net,
        arch="resnet20",
        arch_kwargs={"in_channels": 1, "num_classes": 4},
        subnets=specs,
        input_shape=SHAPE,
        mean=[0.286],
        std=[0.353],
        dataset="synthetic",
        config={"epochs": 2, "lr": 0.1, "widths": (0.25, 0.5), "out": Path("runs/x"), "seed": np.int64(3)},
    )
    kwargs.update(overrides)
    return save_checkpoint(path, **kwargs)


def test_round_trip_restores_weights_order_and_bn_stats(trained, tmp_path):
    net, specs, x = trained
    path = _save(net, specs, tmp_path / "model.pt", extra={"note": "hi", "scores": torch.arange(3.0)})
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temp file left behind
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT and raw["version"] == 1 and raw["torch_version"] == torch.__version__

    ckpt = load_checkpoint(path)
    assert [s.name for s in ckpt.subnets] == ["full", "half", "quarter"]  # largest first
    assert ckpt.subnet("half").val_accuracy == 81.5 and ckpt.subnet("half") == specs[2]
    assert ckpt.arch == "resnet20" and ckpt.arch_kwargs == {"in_channels": 1, "num_classes": 4}
    assert ckpt.input_shape == SHAPE and ckpt.mean == (0.286,) and ckpt.std == (0.353,)
    assert ckpt.dataset == "synthetic" and ckpt.extra["note"] == "hi"
    assert torch.equal(ckpt.extra["scores"], torch.arange(3.0))
    assert ckpt.config == {"epochs": 2, "lr": 0.1, "widths": [0.25, 0.5], "out": "runs/x", "seed": 3}

    net2 = ckpt.dynamic_net()
    assert not net2.training and net2.channel_order == net.channel_order
    assert net2.channel_order != {g.name: list(range(g.channels)) for g in net2.groups}
    assert net2.has_bn_stats("half") and not net2.has_bn_stats("quarter")
    with torch.no_grad():
        for spec in (None, *specs):
            with net.use(spec), net2.use(spec):
                assert torch.equal(net(x), net2(x)), spec
        with net2.use(specs[2]):
            y_calibrated = net2(x)
        net2.load_extra_state(bn_stats={})  # without the stored statistics the half net computes something else
        with net2.use(specs[2]):
            assert not torch.allclose(net2(x), y_calibrated, atol=1e-4)
    for spec in specs:
        assert net2.macs(spec) == spec.macs and net2.params(spec) == spec.params


def test_import_path_arch_is_never_imported_from_the_file(trained, tmp_path, monkeypatch):
    net, specs, x = trained
    marker = tmp_path / "imported.txt"
    (tmp_path / "ckpt_user_arch.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('yes')\n"
        "from slimrt.models import resnet20 as net\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _save(net, specs, tmp_path / "model.pt", arch="ckpt_user_arch:net")
    ckpt = load_checkpoint(path)
    try:
        with pytest.raises(CheckpointError, match="never imports code named inside a file.*--arch ckpt_user_arch:net"):
            ckpt.dynamic_net()
        assert not marker.exists() and "ckpt_user_arch" not in sys.modules
        net2 = load_checkpoint(path, arch_override="ckpt_user_arch:net").dynamic_net()  # the user said so
        assert marker.exists()
        with torch.no_grad(), net.use(specs[0]), net2.use(specs[0]):
            assert torch.equal(net(x), net2(x))
    finally:
        sys.modules.pop("ckpt_user_arch", None)


def test_unregistered_or_mismatched_architecture(trained, tmp_path):
    net, specs, _ = trained
    path = _save(net, specs, tmp_path / "a.pt", arch="resnet9000")
    with pytest.raises(CheckpointError, match="does not register"):
        load_checkpoint(path).dynamic_net()
    path = _save(net, specs, tmp_path / "b.pt", arch_kwargs={"in_channels": 1, "num_classes": 7})
    with pytest.raises(CheckpointError, match="do not fit resnet20"):
        load_checkpoint(path).dynamic_net()
    path = _save(net, specs, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="weights in .* do not fit resnet56"):
        load_checkpoint(path, arch_override="resnet56").dynamic_net()


def test_save_validates_before_writing(trained, tmp_path):
    net, specs, _ = trained
    path = _save(net, specs, tmp_path / "model.pt")
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=r"config\.bad: cannot store a CustomThing"):
        _save(net, specs, path, config={"bad": CustomThing()})
    with pytest.raises(CheckpointError, match="tensors are not allowed"):
        _save(net, specs, path, config={"t": torch.ones(1)})
    with pytest.raises(CheckpointError, match="unique"):
        _save(net, [specs[0], specs[0]], path)
    with pytest.raises(CheckpointError, match="1 or 1 entries"):
        _save(net, specs, path, mean=[0.1, 0.2], std=[1.0, 1.0])
    bogus = specs[0].model_copy(update={"widths": {"no_such_group": 3}})
    with pytest.raises(CheckpointError, match="no_such_group"):
        _save(net, [bogus], path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


# ------------------------------------------------------------------------------------------------------ bad files


def test_missing_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "manifest.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a file.*exported artifact"):
        load_checkpoint(tmp_path / "art")


def test_random_bytes_and_empty_file(tmp_path):
    p = tmp_path / "random.pt"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="random.pt is (not a slimrt checkpoint|truncated or corrupt)"):
        load_checkpoint(p)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "empty.pt")


def test_truncated_real_checkpoint(trained, tmp_path):
    net, specs, _ = trained
    data = _save(net, specs, tmp_path / "model.pt").read_bytes()
    for cut in (len(data) // 2, len(data) - 10):
        p = tmp_path / f"cut{cut}.pt"
        p.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_checkpoint(p)


def test_pickled_code_is_refused_and_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "thing": CustomThing()}, tmp_path / "custom.pt")
    with pytest.raises(CheckpointError, match=r"carries pickled code \(.*CustomThing\); refusing to load it"):
        load_checkpoint(tmp_path / "custom.pt")
    torch.save(RunsCode(), tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="carries pickled code.*refusing"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned.txt").exists()


def test_not_a_slimrt_checkpoint(trained, tmp_path):
    net, specs, _ = trained
    torch.save(net.model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="not a slimrt checkpoint: it holds a plain state dict"):
        load_checkpoint(tmp_path / "sd.pt")
    torch.save({"format": "other-tool", "version": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="format='other-tool'"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(tmp_path / "list.pt")

    good = torch.load(_save(net, specs, tmp_path / "model.pt"), weights_only=True)
    torch.save({**good, "version": 99}, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="version 99; this slimrt reads version 1"):
        load_checkpoint(tmp_path / "v99.pt")
    torch.save({k: v for k, v in good.items() if k != "state_dict"}, tmp_path / "nosd.pt")
    with pytest.raises(CheckpointError, match="lacks 'state_dict'"):
        load_checkpoint(tmp_path / "nosd.pt")
    torch.save({**good, "subnets": [{"name": "bad name!", "widths": {}, "macs": 1, "params": 1}]}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="invalid sub-net spec"):
        load_checkpoint(tmp_path / "s.pt")
    torch.save({**good, "std": [0.0]}, tmp_path / "std.pt")
    with pytest.raises(CheckpointError, match="invalid normalization"):
        load_checkpoint(tmp_path / "std.pt")
