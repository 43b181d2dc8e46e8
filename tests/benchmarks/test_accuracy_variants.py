"""Every named variant of the standard accuracy benchmark is a valid search configuration whose latency table (when
it names one) is committed and describes the benchmark's network: a variant that fails here would fail only after an
hour of pre-training checks in a background run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy_standard import (  # noqa: E402
    STANDARD,
    USNET_VARIANTS,
    VARIANTS,
    build_config,
    pretrain,
    run_method,
    usnet_grid,
)

RESULTS = ROOT / "benchmarks" / "results" / "accuracy" / "standard-resnet20"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_builds_a_valid_search_config(name):
    from slimrt.train.data import load_dataset
    from slimrt.train.latency import LatencyPredictor, load_latency_table
    from slimrt.train.trainer import build_net

    fields = dict(VARIANTS[name])
    if "latency_table" in fields:
        fields["latency_table"] = str(RESULTS / fields["latency_table"])
    cfg = build_config(0, method="progressive", budget_macs=10**15, **fields)
    assert cfg.method == "progressive" and cfg.supernet_epochs == fields.get("supernet_epochs", 0)
    if cfg.latency_table is not None:
        data = load_dataset("synthetic-1x28x28", val_size=16, limit_train=32, seed=0)
        net = build_net(cfg.updated(dataset="synthetic-1x28x28"), data)
        pred = LatencyPredictor(net, load_latency_table(cfg.latency_table))  # the table fits the network
        assert pred.full_ms > 0
    assert STANDARD["subnets"] == cfg.subnets


@pytest.mark.usefixtures("one_torch_thread")
def test_usnet_variant_trains_and_evaluates_down_to_its_narrowest_width(tmp_path, monkeypatch):
    """``usnet-w8``: a real (tiny) US-Nets run through the benchmark, trained from 1/8 width and evaluated on the
    grid c / C down to c = C / 8, recorded under the variant's name (C = 16 here instead of 64: 15 widths, not 57)."""
    import accuracy_standard

    assert set(USNET_VARIANTS) == {"usnet-w8"}
    monkeypatch.setattr(accuracy_standard, "USNET_GRID_CHANNELS", 16)
    tiny = {"dataset": "synthetic", "limit_train": 256, "val_size": 64, "pretrain_epochs": 1, "batch_size": 64,
            "arch_kwargs": {"widths": [8, 8, 16]}, "subnets": 2, "min_macs": 0.3}  # fmt: skip
    results, work = tmp_path / "results", tmp_path / "work"
    info = pretrain(0, results, work, tiny, None)
    assert run_method("usnet-w8", 0, results, work, tiny, "test", None, info) == 0
    run = json.loads((results / "usnet-w8-seed0.json").read_text())
    assert run["method"] == "usnet-w8" and run["config"]["method"] == "usnet"
    assert run["config"]["usnet_min_width"] == 0.125 and run["width_range"] == [0.125, 1.0]
    names = [g["name"] for g in run["grid"]]
    assert names[0] == "w16" and names[-1] == "w2" and len(names) == 15
    assert run["grid"][-1]["widths"] == {k: max(1, v // 8) for k, v in run["grid"][0]["widths"].items()}
    assert all(0 <= g["test_accuracy"] <= 100 for g in run["grid"])


def test_usnet_grid_starts_at_the_trained_range():
    """The standard grid: c / 64 from c = 16 (usnet, 0.25) or c = 8 (usnet-w8, 0.125) to 64, widest first."""
    import torch

    from slimrt.models import create_model
    from slimrt.train.dynamic import DynamicNet

    net = DynamicNet(create_model("resnet20", in_channels=1, num_classes=10), torch.zeros(1, 1, 28, 28))
    for min_width, lo, n in ((0.25, 16, 49), (0.125, 8, 57)):
        grid = usnet_grid(net, min_width)
        assert [g.name for g in grid] == [f"w{c}" for c in range(64, lo - 1, -1)] and len(grid) == n
        assert grid[-1].widths == net.uniform_spec(min_width, "x").widths


@pytest.mark.usefixtures("one_torch_thread")
def test_aligned_variant_keeps_every_width_a_multiple_of_8(tmp_path):
    """``progressive-supernet-a8``: a real (tiny) search through the benchmark whose every sub-net keeps multiples of 8
    channels in every group, the 16-channel ones included (which the standard units of 4 would cut to 4 or 12)."""
    tiny = {"dataset": "synthetic", "limit_train": 256, "val_size": 64, "pretrain_epochs": 1, "batch_size": 64,
            "arch_kwargs": {"widths": [16, 16, 32]}, "subnets": 3, "min_macs": 0.3, "noise_steps": 4,
            "finetune_steps": 4, "calib_batches": 2, "eval_batch_size": 64}  # fmt: skip
    results, work = tmp_path / "results", tmp_path / "work"
    info = pretrain(0, results, work, tiny, None)
    assert run_method("progressive-supernet-a8", 0, results, work, tiny, "test", None, info) == 0
    run = json.loads((results / "progressive-supernet-a8-seed0.json").read_text())
    assert run["config"]["min_units"] == 2 and run["config"]["supernet_epochs"] == 2
    widths = [w for s in run["subnets"] for w in s["widths"].values()]
    assert len(run["subnets"]) == 3 and run["subnets"][-1]["macs"] < 0.5 * run["subnets"][0]["macs"]
    assert all(w % 8 == 0 for w in widths), widths
    assert any(w == 8 for s in run["subnets"] for g, w in s["widths"].items() if g.startswith("layer1")), widths
