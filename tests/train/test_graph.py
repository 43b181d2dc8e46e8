import pytest
import torch
from nets import CatDepthwise, Residual, Unsupported

from slimrt.errors import GraphError
from slimrt.train.graph import analyze


def _groups(model, shape):
    analysis, _ = analyze(model, torch.zeros(1, *shape))
    return {g.name: g for g in analysis.groups}, analysis.layers


def test_residual_stream_is_one_group_and_io_fixed():
    groups, layers = _groups(Residual(), (1, 16, 16))
    # stem, block-1 conv2 and the identity add share one group; block-2 output and projection shortcut another
    assert layers["b1c2"].out_layout == layers["conv1"].out_layout
    assert layers["short"].out_layout == layers["b2c2"].out_layout
    assert layers["b1c1"].out_layout != layers["conv1"].out_layout
    assert not groups["input"].prunable and not groups["fc"].prunable
    assert sum(g.prunable for g in groups.values()) == 4  # stem stream, b1c1, b2c1, stage-2 stream


def test_concat_depthwise_grouped_flatten():
    groups, layers = _groups(CatDepthwise(), (1, 8, 8))
    bn = layers["bn"].out_layout
    assert [(s.group, s.size) for s in bn.segments] == [("a", 8), ("b", 6)]
    assert layers["dw"].kind == "dwconv" and layers["dw"].out_layout == layers["dw"].in_layout == bn
    assert layers["g"].kind == "gconv"
    # a grouped conv fixes its input and output channels
    assert not groups["pw"].prunable and not groups["g"].prunable
    assert layers["fc1"].in_layout.repeat == 4
    assert groups["fc1"].prunable and not groups["fc"].prunable


def test_unsupported_op_names_node_and_op():
    with pytest.raises(GraphError, match=r"roll"):
        _groups(Unsupported(), (1, 8, 8))


def test_untraceable_model_is_reported():
    class Branchy(torch.nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(GraphError, match="could not trace"):
        analyze(Branchy(), torch.zeros(1, 1, 4, 4))
