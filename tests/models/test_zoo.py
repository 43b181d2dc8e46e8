"""The model zoo: every registered model builds, runs, traces, trains, and works with DynamicNet."""

from __future__ import annotations

import random
import sys
import textwrap
import zlib

import pytest
import torch
import torch.fx
from torch import nn

from slimrt.errors import ConfigError
from slimrt.models import create_model, is_registered, list_models, register_model, resolve_arch

EXPECTED = {"resnet20", "resnet56", "resnet18", "vgg11_bn", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small"}
SHAPES = [(1, 28, 28), (3, 32, 32)]


def count_macs_params(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """Hook-based count: conv MACs = out * in/groups * kh * kw * Hout * Wout, linear in * out; all parameters."""
    macs = 0

    def hook(mod: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            macs += out.shape[1] * (mod.in_channels // mod.groups) * kh * kw * out.shape[2] * out.shape[3]
        elif isinstance(mod, nn.Linear):
            macs += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return macs, sum(p.numel() for p in model.parameters())


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_registry_lists_the_zoo():
    assert EXPECTED <= set(list_models())
    assert list_models() == sorted(list_models())
    assert all(is_registered(n) for n in EXPECTED) and not is_registered("resnet9000")


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("shape", SHAPES, ids=["1x28x28", "3x32x32"])
def test_model_runs_traces_and_trains(name, shape):
    torch.manual_seed(0)
    model = create_model(name, in_channels=shape[0], num_classes=7)
    x = torch.randn(2, *shape)
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        assert torch.allclose(traced(x), y, atol=1e-6)
    ops = {n.op for n in traced.graph.nodes}
    assert "call_module" in ops
    model.train()
    model(x).logsumexp(1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a gradient: {no_grad[:5]}"


def test_resnet20_counts_match_the_paper():
    macs, params = count_macs_params(create_model("resnet20"), (3, 32, 32))
    # ~40.55M MACs / 0.270M params with option-A shortcuts; the two 1x1 projection shortcuts add ~0.26M / 2.7k.
    assert 40.5e6 <= macs <= 41.0e6, macs
    assert 0.26e6 <= params <= 0.28e6, params
    macs56, params56 = count_macs_params(create_model("resnet56"), (3, 32, 32))
    assert 120e6 <= macs56 <= 130e6 and 0.84e6 <= params56 <= 0.87e6


def test_resnet18_matches_torchvision_layout():
    model = create_model("resnet18", num_classes=1000)
    sd = model.state_dict()
    # torchvision.models.resnet18(): 122 state-dict entries, 11,689,512 parameters, ~1.82 GMACs at 224 px.
    assert len(sd) == 122
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    for key in [
        "conv1.weight", "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.conv1.weight", "layer1.1.bn2.bias",
        "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean", "layer4.1.conv2.weight",
        "fc.weight", "fc.bias",
    ]:  # fmt: skip
        assert key in sd, key
    assert not any(k.startswith("layer1.0.downsample") for k in sd)
    assert sd["conv1.weight"].shape == (64, 3, 7, 7) and sd["fc.weight"].shape == (1000, 512)
    macs, _ = count_macs_params(model, (3, 224, 224))
    assert 1.80e9 <= macs <= 1.83e9


def test_resnet18_small_input_stem():
    big = create_model("resnet18", in_channels=1)
    small = create_model("resnet18", in_channels=1, small_input=True)
    assert small.state_dict().keys() == big.state_dict().keys()
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    # No max-pool in the traced small-input graph; 28 px stays 28 px through the stem.
    assert "maxpool" not in {n.target for n in torch.fx.symbolic_trace(small).graph.nodes}
    assert "maxpool" in {n.target for n in torch.fx.symbolic_trace(big).graph.nodes}
    m_small, _ = count_macs_params(small, (1, 28, 28))
    m_big, _ = count_macs_params(big, (1, 28, 28))
    assert m_small > 10 * m_big


def test_mobilenet_v2_has_residual_adds_and_depthwise_convs():
    model = create_model("mobilenet_v2")
    graph = torch.fx.symbolic_trace(model).graph
    adds = [n for n in graph.nodes if n.op == "call_function" and "add" in str(n.target)]
    assert len(adds) == 10  # residual blocks: 24:1, 32:2, 64:3, 96:2, 160:2
    dw = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    assert len(dw) == 17
    v1 = create_model("mobilenet_v1")
    assert sum(isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1 for m in v1.modules()) == 13


def test_zero_init_residual_flag():
    default = create_model("resnet20")
    zeroed = create_model("resnet20", zero_init_residual=True)
    assert all(b.bn2.weight.abs().sum() > 0 for b in default.layer1)
    assert all(b.bn2.weight.abs().sum() == 0 for s in (zeroed.layer1, zeroed.layer2, zeroed.layer3) for b in s)
    assert zeroed.bn1.weight.abs().sum() > 0
    conv = default.layer1[0].conv1.weight
    assert 0.5 < conv.std().item() / (2.0 / (16 * 9)) ** 0.5 < 1.5  # kaiming fan_out


def test_create_model_options_and_errors():
    assert create_model("vgg11_bn", num_classes=3).classifier.out_features == 3
    assert create_model("mobilenet_v1", width_mult=0.5).fc.in_features == 512
    with pytest.raises(ConfigError, match="resnet20"):
        create_model("resnet21")
    with pytest.raises(ConfigError, match="cannot build"):
        create_model("resnet20", no_such_option=1)


def test_register_model_rejects_a_second_factory_with_the_same_name():
    def resnet20(**kwargs):  # same name as the built-in
        return nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_model(resnet20)


def test_user_import_path(tmp_path, monkeypatch):
    (tmp_path / "user_arch_mod.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def tiny(in_channels=3, num_classes=10, hidden=4):
                return nn.Sequential(nn.Conv2d(in_channels, hidden, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     nn.Linear(hidden, num_classes))

            def not_a_model(in_channels=3, num_classes=10):
                return 42

            VALUE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        model = create_model("user_arch_mod:tiny", in_channels=1, num_classes=5, hidden=6)
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 5) and model[0].out_channels == 6
        assert resolve_arch("slimrt.models.resnet_cifar:resnet20") is resolve_arch("resnet20")
        with pytest.raises(ConfigError, match="returned int"):
            create_model("user_arch_mod:not_a_model")
        with pytest.raises(ConfigError, match="not callable"):
            resolve_arch("user_arch_mod:VALUE")
        with pytest.raises(ConfigError, match="no attribute"):
            resolve_arch("user_arch_mod:missing")
        with pytest.raises(ConfigError, match="cannot import"):
            resolve_arch("no_such_pkg_xyz.models:net")
        with pytest.raises(ConfigError, match="package.module:factory"):
            resolve_arch("a:b:c")
    finally:
        sys.modules.pop("user_arch_mod", None)


@pytest.mark.parametrize("name", list_models())
def test_dynamic_net_over_the_zoo(name):
    """Channel-group analysis, a random nested pair of sub-nets, extraction and counting for every model."""
    from slimrt.train import DynamicNet

    shape = (1, 28, 28)
    torch.manual_seed(0)
    model = create_model(name, in_channels=shape[0])
    _randomize_bn(model)
    full_macs, full_params = count_macs_params(model, shape)
    net = DynamicNet(model, torch.zeros(1, *shape)).eval()
    assert net.macs() == full_macs and net.params() == full_params
    assert net.prunable_groups and len({g.name for g in net.groups}) == len(net.groups)

    rng = random.Random(zlib.crc32(name.encode()))
    big = {g.name: rng.randint(max(1, g.channels // 2), g.channels) for g in net.prunable_groups}
    small = {g: rng.randint(1, w) for g, w in big.items()}
    s_big, s_small = net.spec(big, name="big"), net.spec(small, name="small")
    assert s_small.nested_in(s_big) and s_small.macs < s_big.macs < net.macs()

    x = torch.randn(3, *shape)
    with torch.no_grad():
        full = net(x)
        for spec in (s_big, s_small):
            with net.use(spec):
                y = net(x)
            sub = net.extract(spec)
            assert (sub(x) - y).abs().max().item() <= 1e-5
            assert not torch.allclose(y, full)
            macs, params = count_macs_params(sub, shape)
            assert macs == spec.macs == net.macs(spec)
            assert params == spec.params == net.params(spec)


def test_mobilenet_v3_small_matches_torchvision_counts():
    model = create_model("mobilenet_v3_small", num_classes=1000, small_input=False)
    # torchvision.models.mobilenet_v3_small(): 2,542,856 parameters, ~56.5M MACs at 224 px, 9 SE blocks.
    assert sum(p.numel() for p in model.parameters()) == 2_542_856
    macs, _ = count_macs_params(model, (3, 224, 224))
    assert 56e6 <= macs <= 57e6
    se = [m for m in model.modules() if type(m).__name__ == "SqueezeExcitation"]
    assert len(se) == 9 and all(isinstance(m.scale_activation, nn.Hardsigmoid) for m in se)
    sd = model.state_dict()
    for key in ["features.0.0.weight", "features.1.block.1.fc1.weight", "features.4.block.2.fc2.bias",
                "features.12.0.weight", "classifier.0.weight", "classifier.3.bias"]:  # fmt: skip
        assert key in sd, key


def test_rgb_only_factories_get_no_in_channels(tmp_path, monkeypatch):
    """torchvision-style builders take ``num_classes`` but not ``in_channels``: built for RGB, refused otherwise."""
    (tmp_path / "rgb_arch_mod.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def _net(num_classes):
                return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     nn.Linear(4, num_classes))

            def plain(num_classes=10):
                return _net(num_classes)

            def tv_style(*, weights=None, progress=True, **kwargs):  # torchvision.models.resnet18's signature
                return _net(**kwargs)

            tv_style.__module__ = "torchvision.models.fake"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        for name in ("rgb_arch_mod:plain", "rgb_arch_mod:tv_style"):
            model = create_model(name, in_channels=3, num_classes=5)
            assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 5)
            with pytest.raises(ConfigError, match="no in_channels parameter.*1 channel"):
                create_model(name, in_channels=1, num_classes=5)
    finally:
        sys.modules.pop("rgb_arch_mod", None)
