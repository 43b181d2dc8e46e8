import random

import pytest
import torch
from nets import CatDepthwise, Residual

from slimrt.errors import ConfigError
from slimrt.schema import SubnetSpec
from slimrt.train import DynamicNet

CASES = [(Residual, (1, 16, 16)), (CatDepthwise, (1, 8, 8))]


def _net(cls, shape, seed=0):
    torch.manual_seed(seed)
    net = DynamicNet(cls(), torch.zeros(1, *shape))
    x = torch.randn(8, *shape)
    net.train()
    with torch.no_grad():  # give the shared BN statistics non-trivial values
        net(x)
    return net.eval(), x


def _random_spec(net, rng, name):
    return net.spec({g.name: rng.randint(1, g.channels) for g in net.prunable_groups}, name=name)


@pytest.mark.parametrize("cls,shape", CASES)
def test_extract_matches_dynamic_and_counts(cls, shape):
    net, x = _net(cls, shape)
    rng = random.Random(0)
    for i in range(6):
        spec = _random_spec(net, rng, f"s{i}")
        if i % 2:
            net.calibrate_bn(spec, [x[:4], x[4:]])
        with net.use(spec):
            y = net(x)
        sub = net.extract(spec)
        assert (sub(x) - y).abs().max().item() <= 1e-5
        assert sum(p.numel() for p in sub.parameters()) == spec.params == net.params(spec)
        assert spec.macs == net.macs(spec) < net.macs()
    full = net.extract(net.full_spec())
    assert sum(p.numel() for p in full.parameters()) == sum(p.numel() for p in net.model.parameters())


def test_full_spec_equals_plain_model_and_macs():
    net, x = _net(Residual, (1, 16, 16))
    y = net(x)
    with net.use(net.full_spec()):
        assert torch.equal(net(x), y)
    # conv MACs by hand: stem 1*8*9*256, block1 2*(8*8*9*256), block2 8*16*9*64 + 16*16*9*64 + 8*16*64, fc 16*4
    expected = 8 * 9 * 256 + 2 * 8 * 8 * 9 * 256 + 8 * 16 * 9 * 64 + 16 * 16 * 9 * 64 + 8 * 16 * 64 + 16 * 4
    assert net.macs() == expected


def test_spec_validation():
    net, _ = _net(Residual, (1, 16, 16))
    with pytest.raises(ConfigError, match="unknown channel group"):
        net.spec({"nope": 1})
    with pytest.raises(ConfigError, match="cannot keep 9"):
        net.spec({"conv1": 9})
    with pytest.raises(ConfigError, match="fixed"):
        net.spec({"fc": 2})
    s = net.spec({"conv1": 4}, name="a")
    assert isinstance(s, SubnetSpec) and s.widths["conv1"] == 4 and s.widths["b2c1"] == 16


def test_gradients_only_reach_kept_channels():
    net, x = _net(Residual, (1, 16, 16))
    net.train()
    spec = net.spec({"conv1": 3, "b1c1": 5, "b2c1": 7, "b2c2": 9})
    with net.use(spec):
        net(x).sum().backward()
    g = net.model.b1c1.weight.grad
    assert g[:5, :3].abs().sum() > 0
    assert g[5:].abs().sum() == 0 and g[:, 3:].abs().sum() == 0
    assert net.model.fc.weight.grad[:, 9:].abs().sum() == 0


def test_training_a_subnet_leaves_shared_bn_stats_alone():
    net, x = _net(Residual, (1, 16, 16))
    before = net.model.bn1.running_mean.clone()
    net.train()
    with net.use(net.spec({"conv1": 4})):
        net(x)
    assert torch.equal(net.model.bn1.running_mean, before)
    net(x)  # full network in train mode updates them
    assert not torch.equal(net.model.bn1.running_mean, before)


def test_calibrate_bn_stores_per_subnet_stats_and_eval_uses_them():
    net, x = _net(Residual, (1, 16, 16))
    spec = net.spec({"conv1": 4, "b2c2": 8}, name="small")
    with net.use(spec):
        before = net(x)
    used = net.calibrate_bn(spec, [x * 3 + 1, x * 3 - 1, x], max_batches=2)
    assert used == 2
    st = net.bn_stats["small"]["bn1"]
    assert st["mean"].shape == (4,)
    assert not torch.allclose(st["mean"], net.model.bn1.running_mean[:4])  # statistics really changed
    # cumulative average of the two batches' means
    with torch.no_grad():
        h = [net.model.conv1.weight[:4] for _ in range(1)][0]
        m = [torch.nn.functional.conv2d(b, h, padding=1).mean((0, 2, 3)) for b in (x * 3 + 1, x * 3 - 1)]
    torch.testing.assert_close(st["mean"], (m[0] + m[1]) / 2, rtol=1e-4, atol=1e-5)
    with net.use(spec):
        after = net(x)
    assert not torch.allclose(before, after)
    assert net.has_bn_stats("small") and not net.has_bn_stats("other")


@pytest.mark.parametrize("cls,shape", CASES)
def test_reorder_keeps_function(cls, shape):
    net, x = _net(cls, shape)
    y = net(x)
    order = {g.name: torch.randperm(g.channels) for g in net.prunable_groups}
    net.reorder(order)
    torch.testing.assert_close(net(x), y, rtol=1e-4, atol=1e-5)
    g0 = net.prunable_groups[0].name
    assert net.channel_order[g0] == order[g0].tolist()


def test_reorder_within_prefix_keeps_subnet_stats():
    net, x = _net(Residual, (1, 16, 16))
    spec = net.spec({"conv1": 6}, name="s")
    net.calibrate_bn(spec, [x])
    with net.use(spec):
        y = net(x)
    perm = torch.tensor([5, 4, 3, 2, 1, 0, 6, 7])  # moves channels only inside the kept prefix
    net.reorder({"conv1": perm})
    assert net.has_bn_stats("s")
    with net.use(spec):
        torch.testing.assert_close(net(x), y, rtol=1e-4, atol=1e-5)
    net.reorder({"conv1": torch.tensor([7, 1, 2, 3, 4, 5, 6, 0])})  # brings a dropped channel into the prefix
    assert not net.has_bn_stats("s")


def test_reorder_rejects_non_permutation():
    net, _ = _net(Residual, (1, 16, 16))
    with pytest.raises(ConfigError, match="permutation"):
        net.reorder({"conv1": [0, 0, 1, 2, 3, 4, 5, 6]})


def test_uniform_spec_rounding():
    net, _ = _net(Residual, (1, 16, 16))
    s = net.uniform_spec(0.3, "u", round_to=4)
    assert s.widths == {"conv1": 4, "b1c1": 4, "b2c1": 8, "b2c2": 8}


_STRIDED_1X1 = """
import torch
from torch import nn
from slimrt.train import DynamicNet

torch.set_num_threads(1)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 8, 1, stride=2), nn.Flatten(), nn.LazyLinear(3))
net = DynamicNet(model, torch.zeros(1, 1, 28, 28)).to(memory_format=torch.channels_last)
for _ in range(30):
    x = torch.randn(64, 1, 28, 28).to(memory_format=torch.channels_last)
    net(x).sum().backward()
print("ok")
"""


def test_strided_1x1_conv_backward_channels_last(tmp_path):
    """A strided 1x1 conv with few channels, channels-last, backward: crashed the process on AVX2-only CPUs
    (oneDNN heap corruption) before DynamicNet ran it as a stride-1 conv on the subsampled input."""
    import subprocess
    import sys

    script = tmp_path / "strided.py"
    script.write_text(_STRIDED_1X1)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_strided_1x1_conv_matches_plain_conv():
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(6, 10, 1, stride=2)
    net = DynamicNet(torch.nn.Sequential(torch.nn.Conv2d(6, 10, 1, stride=2)), torch.zeros(1, 6, 9, 9))
    net.model[0].load_state_dict(plain.state_dict())
    x = torch.randn(3, 6, 9, 9)
    assert torch.allclose(net(x), plain(x), atol=1e-6)
    spec = net.spec({g.name: 4 for g in net.prunable_groups}, name="s")
    with net.use(spec):
        y = net(x)
    assert torch.allclose(y, plain(x)[:, : y.shape[1]], atol=1e-6) and y.shape[2:] == (5, 5)
