"""benchmarks/latency_graph_fit.py: ONNX Runtime's real optimized graphs of ResNet-20 sub-nets, and the fits."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from latency_graph_fit import graph_counts, judge_model  # noqa: E402


@pytest.mark.usefixtures("one_torch_thread")
def test_convolutions_fed_channel_counts_off_a_multiple_of_4_run_plain(tmp_path):
    pytest.importorskip("onnxruntime")
    import torch

    from slimrt.bench.layers import probe_layout_block

    if probe_layout_block() is None:
        pytest.skip("this ONNX Runtime has no blocked layout on this CPU")
    from slimrt.models import create_model
    from slimrt.train.dynamic import DynamicNet

    net = DynamicNet(create_model("resnet20", in_channels=1, num_classes=10), torch.zeros(1, 1, 28, 28)).eval()
    full = net.full_spec().widths
    counts = graph_counts(net, full, tmp_path)
    assert counts["nchwc_convs"] == 21 and counts["plain_convs"] == 0 and counts["reorders"] >= 1
    # 12 channels inside the stage-1 blocks: a multiple of 4, padded to the block, still blocked
    inner = {**full, "layer1.0.conv1": 12, "layer1.1.conv1": 12}
    assert graph_counts(net, inner, tmp_path)["plain_convs"] == 0
    # a 30-channel stage-2 stream: the 4 convolutions it feeds run plain (slimrt.schema.plain_layout: not a multiple
    # of 4, and at least the block, 8 with AVX2 and 16 with AVX-512)
    stream = {**full, "layer2.0.downsample.0": 30}
    assert graph_counts(net, stream, tmp_path)["plain_convs"] == 4


def test_judge_model_recovers_a_known_cost_and_scores_the_held_out_set_relative_to_its_full_network():
    rng = np.random.default_rng(0)

    def feats(n):
        return [{"one": 1.0, "layers_ms": float(a), "plain_convs": float(p)}
                for a, p in zip(rng.uniform(0.2, 1.0, n), rng.integers(0, 21, n), strict=True)]  # fmt: skip

    def truth(fs):
        return np.array([0.1 + 0.8 * f["layers_ms"] + 0.02 * f["plain_convs"] for f in fs])

    train, held = feats(30), [{"one": 1.0, "layers_ms": 1.0, "plain_convs": 0.0}, *feats(10)]
    right = judge_model(("one", "layers_ms", "plain_convs"), train, truth(train), held, 2 * truth(held), 0)
    assert right["coef"] == pytest.approx([0.1, 0.8, 0.02], abs=1e-9)
    assert right["leave_one_out"]["max_rel_error"] < 1e-9
    assert right["judged"]["max_rel_error"] < 1e-9 and right["judged"]["n"] == 10  # a drift x2 cancels
    wrong = judge_model(("one", "layers_ms"), train, truth(train), held, 2 * truth(held), 0)
    assert wrong["leave_one_out"]["median_rel_error"] > 0.01 and wrong["judged"]["max_rel_error"] > 0.05
