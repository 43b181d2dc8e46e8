"""Weights stored once: contiguity rule, graph rewriting, and ONNX Runtime equality on a hand-sliced sub-net."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from slimrt.exporters.onnx import export_module
from slimrt.exporters.validate import onnx_runner
from slimrt.exporters.weights import ALIGNMENT, WeightStore, is_contiguous_prefix


class SmallCNN(nn.Module):
    """conv-bn-relu x2 with a residual add, global pool, linear: every shape the exporter must share."""

    def __init__(self, c1: int = 16, c2: int = 24, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, c2, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(c2)
        self.fc = nn.Linear(c2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(x + self.bn3(self.conv3(x)))
        return self.fc(x.mean((2, 3)))


def _full() -> SmallCNN:
    torch.manual_seed(0)
    net = SmallCNN()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _hand_slice(full: SmallCNN, c1: int, c2: int) -> SmallCNN:
    """What DynamicNet.extract produces: parameters are prefixes; BN statistics are the sub-net's own."""
    sub = SmallCNN(c1, c2).eval()
    sd = full.state_dict()
    new = {}
    for k, v in sub.state_dict().items():
        new[k] = sd[k] if v.ndim == 0 else sd[k][tuple(slice(0, d) for d in v.shape)].clone()
        if k.endswith("running_mean"):
            new[k] = new[k] + 0.05  # per-sub-net statistics differ from the full net's
    sub.load_state_dict(new)
    return sub


def _brute_contiguous(sub: tuple[int, ...], full: tuple[int, ...]) -> bool:
    idx = np.arange(int(np.prod(full))).reshape(full)[tuple(slice(0, s) for s in sub)].ravel()
    return bool(np.array_equal(idx, np.arange(idx.size)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 3)), min_size=1, max_size=4))
def test_contiguity_rule_matches_brute_force(dims):
    full = tuple(f for f, _ in dims)
    sub = tuple(max(1, f - d) for f, d in dims)
    assert is_contiguous_prefix(sub, full) == _brute_contiguous(sub, full)


def test_weights_file_layout_is_aligned_and_exact(tmp_path):
    full = _full()
    tensors = {k: p.detach().numpy() for k, p in full.named_parameters()}
    store = WeightStore(tensors)
    path = tmp_path / "weights.bin"
    assert store.write(path) == path.stat().st_size == store.nbytes
    data = path.read_bytes()
    for name, arr in tensors.items():
        off = store._entries[name].offset
        assert off % ALIGNMENT == 0
        got = np.frombuffer(data[off : off + arr.nbytes], dtype=np.float32).reshape(arr.shape)
        assert np.array_equal(got, arr)


def test_shared_subnets_match_torch_and_standalone(tmp_path):
    full = _full()
    store = WeightStore({k: p.detach().numpy() for k, p in full.named_parameters()})
    (tmp_path / "subnets").mkdir()
    store.write(tmp_path / "subnets" / "weights.bin")
    x = torch.randn(4, 1, 12, 12)
    example = torch.zeros(1, 1, 12, 12)
    sizes = {}
    for name, module in {"full": full, "half": _hand_slice(full, 8, 12), "odd": _hand_slice(full, 5, 7)}.items():
        model = export_module(module, example, dynamic_batch=True)
        ops = [n.op_type for n in model.graph.node]
        assert ops.count("BatchNormalization") == 3  # BN kept over unfused shared weights
        assert "Shape" not in ops  # the dynamic-batch head was simplified as in a plain export (no per-run work)
        assert not model.graph.value_info and not model.graph.metadata_props
        stats = store.share(model)
        if name == "full":
            assert stats.sliced == 0 and stats.full == len(store.names)
        else:
            # conv2/conv3/fc weights shrink along input channels (not contiguous) -> Slice; 1-D params are prefixes
            assert stats.sliced == 3 and stats.prefix >= 6
        # only BN running statistics (the sub-net's own) and tiny constants stay inline
        assert all("running_" in n or not n.startswith(("conv", "bn", "fc")) for n in stats.inline_names)
        path = tmp_path / "subnets" / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        sizes[name] = path.stat().st_size
        y = onnx_runner(path).infer(x.numpy())
        with torch.no_grad():
            ref = module(x).numpy()
        assert np.abs(y - ref).max() <= 1e-5
    weights_bytes = store.nbytes
    assert all(s < weights_bytes for s in sizes.values())


def test_non_prefix_tensor_stays_inline_and_correct(tmp_path):
    """A tensor that is not a prefix of the shared one must never be redirected to it (no silently wrong weights)."""
    full = _full()
    sub = _hand_slice(full, 8, 12)
    with torch.no_grad():
        sub.conv3.weight[0, 0, 0, 0] += 1.0
    store = WeightStore({k: p.detach().numpy() for k, p in full.named_parameters()})
    store.write(tmp_path / "weights.bin")
    model = export_module(sub, torch.zeros(1, 1, 12, 12))
    stats = store.share(model)
    assert "conv3.weight" in stats.inline_names
    path = tmp_path / "sub.onnx"
    path.write_bytes(model.SerializeToString())
    x = torch.randn(1, 1, 12, 12)
    with torch.no_grad():
        ref = sub(x).numpy()
    assert np.abs(onnx_runner(path).infer(x.numpy()) - ref).max() <= 1e-5


def test_share_refuses_name_collision():
    full = _full()
    store = WeightStore({k: p.detach().numpy() for k, p in full.named_parameters()})
    model = export_module(_hand_slice(full, 8, 12), torch.zeros(1, 1, 12, 12))
    clash = onnx.numpy_helper.from_array(np.zeros(1, np.float32), "conv2.weight::full")
    model.graph.initializer.append(clash)
    with pytest.raises(ValueError, match="already has that name"):
        store.share(model)
