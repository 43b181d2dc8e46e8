from __future__ import annotations

import math

import pytest

from slimrt.errors import ConfigError
from slimrt.train.config import SearchConfig


def test_defaults_are_valid_and_documented():
    cfg = SearchConfig()
    assert cfg.method == "progressive" and cfg.ranking == "noise"
    assert cfg.min_macs == 0.1 and cfg.macs_step == 0.05 and cfg.group_size == 8 and cfg.threshold == 1.0
    assert all(f.description or f.annotation is not None for f in SearchConfig.model_fields.values())


def test_from_toml_then_flags_override(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        'arch = "resnet56"\nsubnets = 6\nthreshold = 2.5\nranking = "l1"\n'
        "macs_targets = [0.2, 1.0, 0.5, 0.3, 0.8, 0.6]\n"
        "[arch_kwargs]\nwidths = [8, 16, 32]\n"
    )
    cfg = SearchConfig.from_toml(path, threshold=0.5, seed=None, subnets=None)
    assert cfg.arch == "resnet56" and cfg.subnets == 6 and cfg.ranking == "l1"
    assert cfg.threshold == 0.5  # flag wins
    assert cfg.seed == 0  # None flag keeps the default
    assert cfg.arch_kwargs == {"widths": [8, 16, 32]}
    assert cfg.macs_targets == [1.0, 0.8, 0.6, 0.5, 0.3, 0.2]


def test_train_table_is_accepted(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[train]\nepochs = 3\n")
    assert SearchConfig.from_toml(path).epochs == 3


@pytest.mark.parametrize(
    "text,needle",
    [
        ("subnets = 0\n", "subnets"),
        ("min_macs = 1.5\n", "min_macs"),
        ('ranking = "magic"\n', "ranking"),
        ("unknown_knob = 1\n", "unknown_knob"),
        ("subnets = 2\nmacs_targets = [0.5]\n", "macs_targets"),
        ("threshold = -1\n", "threshold"),
    ],
)
def test_invalid_values_raise_config_error_naming_the_field(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        SearchConfig.from_toml(path)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        SearchConfig.from_toml(tmp_path / "nope.toml")
    bad = tmp_path / "broken.toml"
    bad.write_text("subnets = = 3")
    with pytest.raises(ConfigError, match="cannot read"):
        SearchConfig.from_toml(bad)


def test_infinite_threshold_and_updates():
    cfg = SearchConfig.build({"threshold": math.inf})
    assert math.isinf(cfg.threshold)
    cfg2 = cfg.updated(subnets=3, lr=None)
    assert cfg2.subnets == 3 and cfg2.lr == cfg.lr
    assert SearchConfig(out="/tmp/x/model.pt").resume_path().name == "model.pt.resume.pt"
    assert SearchConfig(device="cpu").use_channels_last() is True
    assert SearchConfig(device="cuda", channels_last=None).use_channels_last() is False
