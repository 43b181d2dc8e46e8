"""Every named variant of the standard accuracy benchmark is a valid search configuration whose latency table (when
it names one) is committed and describes the benchmark's network: a variant that fails here would fail only after an
hour of pre-training checks in a background run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy_standard import STANDARD, VARIANTS, build_config  # noqa: E402

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
