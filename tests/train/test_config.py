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


# ------------------------------------------------------------------------------------ search step counts


def test_unset_search_steps_scale_with_the_data_given_ones_are_honoured_exactly():
    auto = SearchConfig()
    small = auto.search_steps(180)
    assert (small.noise_steps, small.finetune_steps, small.calib_batches) == (20, 10, 2)  # floors; one calib pass
    assert small.auto == ["noise_steps", "finetune_steps", "calib_batches"]
    mid = auto.search_steps(1000)  # 2 epochs: ceil(2 * 1000 / 64) noise steps, 2 * (1000 // 128) fine-tune steps
    assert (mid.noise_steps, mid.finetune_steps, mid.calib_batches) == (32, 14, 8)
    big = auto.search_steps(6400)
    assert (big.noise_steps, big.finetune_steps, big.calib_batches) == (100, 100, 20)  # the old fixed defaults
    given = SearchConfig(noise_steps=100, finetune_steps=0, calib_batches=20).search_steps(180)
    assert (given.noise_steps, given.finetune_steps, given.calib_batches, given.auto) == (100, 0, 2, [])
    assert "noise_steps 20 (auto)" in small.describe() and "(auto)" not in given.describe()


def test_demo_and_benchmark_configs_keep_their_step_counts():
    import sys
    from pathlib import Path

    from slimrt.demo import DEMO_SEARCH

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from accuracy import FULL, QUICK
    from accuracy_standard import STANDARD

    # (config, training images: limit_train applies after the validation split) -> the counts these runs always used
    cases = [(DEMO_SEARCH, 12000, (20, 20, 8)), (QUICK, 15000, (30, 20, 10)),
             (FULL, 55000, (100, 150, 20)), (STANDARD, 55000, (100, 150, 20))]  # fmt: skip
    for cfg, n, expected in cases:
        steps = SearchConfig.build(cfg).search_steps(n)
        assert (steps.noise_steps, steps.finetune_steps, steps.calib_batches) == expected and steps.auto == []
