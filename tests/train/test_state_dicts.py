"""--init with your own weights: plain and wrapped state dicts, DDP prefixes, one-line mismatch errors."""

from __future__ import annotations

import pytest
import torch

from slimrt.errors import CheckpointError
from slimrt.models import create_model
from slimrt.train import DynamicNet
from slimrt.train.trainer import load_init


def _net(num_classes: int = 10) -> DynamicNet:
    model = create_model("resnet20", widths=[8, 8, 16], in_channels=1, num_classes=num_classes)
    return DynamicNet(model, torch.zeros(1, 1, 8, 8))


def _trained_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    src = create_model("resnet20", widths=[8, 8, 16], in_channels=1, num_classes=10)
    for p in src.parameters():
        p.data.normal_()
    return src.state_dict()


@pytest.mark.parametrize("wrap", ["plain", "model", "state_dict", "ddp", "nested", "compiled-ddp"])
def test_plain_and_wrapped_state_dicts_load(tmp_path, wrap):
    sd = _trained_sd()
    obj = {
        "plain": sd,
        "model": {"model": sd, "epoch": 3, "optimizer": {"lr": 0.1}},
        "state_dict": {"state_dict": sd, "best_acc1": torch.tensor(71.2)},
        "ddp": {f"module.{k}": v for k, v in sd.items()},
        "nested": {"model": {"state_dict": sd}},
        "compiled-ddp": {"model_state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}},
    }[wrap]
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    net = _net()
    load_init(net, path, "resnet20")
    for k, v in net.model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_old_batchnorm_files_without_num_batches_tracked_load(tmp_path):
    sd = {k: v for k, v in _trained_sd().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "old.pt")
    load_init(_net(), tmp_path / "old.pt")


def test_mismatch_names_missing_unexpected_and_shapes_in_one_line(tmp_path):
    sd = _trained_sd()
    sd["head.weight"] = torch.zeros(3)
    for k in [k for k in sd if k.startswith("layer1.0.")][:5]:
        del sd[k]
    torch.save(sd, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as info:
        load_init(_net(num_classes=5), tmp_path / "w.pt", "resnet20")
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and "--arch resnet20" in msg
    assert "1 unexpected key (head.weight)" in msg and "5 missing keys (layer1.0.conv1.weight" in msg
    assert "shape mismatch" in msg and "10x" in msg and "5x" in msg
    torch.save({"epoch": 3, "optimizer": {}}, tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match="no state dict of tensors .*top-level keys: epoch, optimizer"):
        load_init(_net(), tmp_path / "none.pt")
