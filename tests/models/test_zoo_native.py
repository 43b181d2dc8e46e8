"""Every zoo model at its native input, batch 1 (3x224x224 for the ImageNet-style ones, 3x32x32 for the CIFAR-style
ones): channel groups, a half-width
non-uniform sub-net equal to its extracted network, ONNX export validated against PyTorch, SlimRuntime serving
two sub-nets; and a model built by a ``package.module:factory`` from a test module."""

from __future__ import annotations

import random
import sys
import textwrap
import zlib

import numpy as np
import pytest
import torch
from torch import nn

from slimrt.models import create_model

SHAPE = (3, 224, 224)
SMALL = (3, 32, 32)
# ImageNet strides: resnet18 by default, the MobileNets with small_input=False
NATIVE = {
    "resnet18": {},
    "mobilenet_v1": {"small_input": False},
    "mobilenet_v2": {"small_input": False},
    "mobilenet_v3_small": {"small_input": False},
}
# CIFAR-style models (32x32 inputs)
NATIVE_SMALL = {"resnet20": {}, "resnet56": {}, "vgg11_bn": {}}
CLASSES = 100


def test_every_zoo_model_has_a_native_size_test():
    from slimrt.models import list_models

    assert set(list_models()) == set(NATIVE) | set(NATIVE_SMALL)


def _prepare(model: nn.Module, seed: int, shape: tuple[int, ...] = SHAPE):
    """DynamicNet of ``model`` with sub-net specs ``full`` and ``half`` (each group keeps 35-65% of its channels)
    and per-sub-net BN statistics from one batch, so activations stay normalised through the whole depth."""
    from slimrt.train import DynamicNet

    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()  # torch's default init: logits of order 1 (the zoo's N(0, 0.01) makes them tiny)
    net = DynamicNet(model, torch.zeros(1, *shape)).eval()
    rng = random.Random(seed)
    half = net.spec({g.name: max(1, round(g.channels * rng.uniform(0.35, 0.65))) for g in net.prunable_groups},
                    name="half")
    batch = torch.randn(4, *shape, generator=torch.Generator().manual_seed(seed))
    specs = [net.full_spec(), half]
    for spec in specs:
        net.calibrate_bn(spec, [batch])
    return net, specs


@pytest.mark.slow
@pytest.mark.parametrize("name", [*NATIVE, *NATIVE_SMALL])
def test_native_size_subnet_extracts_exports_and_serves(name, tmp_path, export_and_serve, one_torch_thread):
    torch.manual_seed(0)
    shape, kwargs = (SHAPE, NATIVE[name]) if name in NATIVE else (SMALL, NATIVE_SMALL[name])
    model = create_model(name, num_classes=CLASSES, **kwargs)
    net, (full, half) = _prepare(model, zlib.crc32(name.encode()), shape)
    assert len(net.prunable_groups) >= 5
    widths = [half.widths[g.name] / g.channels for g in net.prunable_groups]
    assert 0.3 < min(widths) < max(widths) < 0.7  # non-uniform, about half
    assert half.macs < 0.6 * full.macs

    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), net.use(half):
        y = net(x)
    with torch.no_grad():
        sub_y = net.extract(half)(x)
        full_y = net(x)
    scale = y.abs().max().item()
    assert 0.01 < scale < 1e3 and not torch.allclose(y, full_y)
    # The same float32 ops on the same sliced weights: differences come only from kernels that pick another
    # accumulation order for the smaller layers (~1e-7 relative per layer), so 1e-5 of the output scale holds.
    assert (sub_y - y).abs().max().item() <= 1e-5 * max(1.0, scale)

    result, served, out, ref = export_and_serve(net, [full, half], tmp_path, arch=name,
                                                arch_kwargs={"num_classes": CLASSES, **kwargs})
    assert result.ok and {r.name for r in result.subnets} == {"full", "half"}
    assert out.shape == (1, CLASSES) and served in ("full", "half")
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * max(1.0, scale))


@pytest.mark.slow
def test_factory_from_a_user_module_at_native_size(tmp_path, monkeypatch, export_and_serve, one_torch_thread):
    (tmp_path / "user_zoo_mod.py").write_text(textwrap.dedent(
        """
        from slimrt.models.mobilenet_v3 import MobileNetV3

        def se_net(in_channels=3, num_classes=10):
            return MobileNetV3(in_channels=in_channels, num_classes=num_classes, width_mult=0.5, small_input=False)
        """
    ))  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        torch.manual_seed(0)
        model = create_model("user_zoo_mod:se_net", num_classes=CLASSES)
        net, specs = _prepare(model, 3)
        result, _served, out, ref = export_and_serve(net, specs, tmp_path, arch="user_zoo_mod:se_net",
                                                     arch_kwargs={"num_classes": CLASSES})
        assert result.ok and out.shape == (1, CLASSES)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * max(1.0, float(np.abs(ref).max())))
    finally:
        sys.modules.pop("user_zoo_mod", None)
