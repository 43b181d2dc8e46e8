"""The registry of training methods and the trainer's use of it: one interface, one signature, one report type."""

from __future__ import annotations

import pytest

from slimrt.errors import ConfigError
from slimrt.schema import SubnetSpec
from slimrt.train.checkpoint import load_checkpoint
from slimrt.train.config import SearchConfig
from slimrt.train.methods import (
    BaselineReport,
    MethodContext,
    MethodReport,
    TrainingMethod,
    available_methods,
    base,
    get_method,
    register_method,
)
from slimrt.train.methods.progressive import SearchReport
from slimrt.train.trainer import run_training


def test_builtin_methods_are_registered_under_their_names():
    assert {"progressive", "usnet", "independent"} <= set(available_methods())
    for name in ("progressive", "usnet", "independent"):
        method = get_method(name)
        assert isinstance(method, TrainingMethod) and method.name == name
    assert get_method("progressive").pretrain and get_method("usnet").pretrain
    assert not get_method("independent").pretrain  # trained from scratch: no full-network pre-training
    assert issubclass(SearchReport, MethodReport) and issubclass(BaselineReport, MethodReport)


def test_unknown_method_lists_the_available_ones():
    with pytest.raises(ConfigError, match="available: .*independent.*progressive.*usnet"):
        get_method("nope")


@pytest.fixture()
def fake_usnet(monkeypatch):
    """A stand-in registered as ``usnet`` that records the context the trainer hands it."""
    seen: list[MethodContext] = []

    class Fake(TrainingMethod):
        name = "usnet"
        pretrain = False

        def run(self, ctx: MethodContext) -> tuple[list[SubnetSpec], MethodReport]:
            seen.append(ctx)
            ctx.checkpoint({"search": None, "optimizer": None}, "fake-event")
            spec = ctx.net.full_spec("only").with_accuracy(val=12.5, test=25.0)
            return [spec], MethodReport(method="fake", notes=["ran"])

    monkeypatch.setitem(base._METHODS, "usnet", Fake)
    assert register_method(Fake) is Fake and isinstance(get_method("usnet"), Fake)
    return seen


def test_trainer_runs_the_registered_method_with_one_context(fake_usnet, tmp_path):
    cfg = SearchConfig.build({
        "arch": "resnet20", "arch_kwargs": {"widths": [8, 8, 16]}, "dataset": "synthetic", "limit_train": 64,
        "val_size": 32, "batch_size": 32, "pretrain_epochs": 1, "method": "usnet", "out": str(tmp_path / "m.pt"),
    })  # fmt: skip
    events: list[str] = []
    result = run_training(cfg, hook=events.append)
    [ctx] = fake_usnet
    assert ctx.cfg is cfg and ctx.net.macs() == result.full_macs and ctx.resume is None
    assert ctx.ddp.forward is None and ctx.ddp.batch_transform is None and ctx.ddp.wrap is None  # one process
    assert events == ["pretrained", "fake-event"]  # pretrain=False: no pre-training epochs
    assert ctx.meter.train_macs == 0
    assert result.report == {"method": "fake", "notes": ["ran"]}
    assert [(s.name, s.test_accuracy) for s in result.subnets] == [("only", 25.0)]
    assert load_checkpoint(cfg.out).extra["report"] == result.report
