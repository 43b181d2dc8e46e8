"""Fixtures for the exporter tests: a real (tiny) trained model.pt and one exported artifact, built once per session."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

STEPS = 30
TEST_SLICE = 500  # test images the checkpoint's accuracies are computed on (the first ones of the test split)


@dataclass(frozen=True)
class TrainedModel:
    path: Path
    test_slice: int
    subnet_names: list[str]


def _train(path: Path) -> TrainedModel:
    import torch
    import torch.nn.functional as F

    from slimrt.models import create_model
    from slimrt.train import DynamicNet
    from slimrt.train.checkpoint import save_checkpoint
    from slimrt.train.data import load_dataset

    torch.manual_seed(0)
    ds = load_dataset("fashion-mnist", val_size=500, limit_train=2048)
    kwargs = {"widths": [8, 16, 32]}
    model = create_model("resnet20", in_channels=1, num_classes=10, **kwargs)
    net = DynamicNet(model, torch.zeros(1, *ds.input_shape))
    full = net.full_spec("full")
    groups = net.prunable_groups
    mid = net.uniform_spec(0.75, "w75")
    # non-uniform, nested in w75: stage widths differ per group
    small = net.spec({g.name: max(1, math.ceil(g.channels * (0.5 if i % 2 else 0.25))) for i, g in enumerate(groups)},
                     name="tiny")
    specs = [full, mid, small]
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)
    net.train()
    steps = 0
    while steps < STEPS:
        for xb, yb in ds.batches("train", 32, shuffle=True, generator=gen):
            opt.zero_grad()
            for spec in (full, small):  # sandwich: largest and smallest each step
                with net.use(spec):
                    F.cross_entropy(net(xb), yb).backward()
            opt.step()
            steps += 1
            if steps >= STEPS:
                break
    net.eval()
    x_test, y_test = ds.x_test[:TEST_SLICE], ds.y_test[:TEST_SLICE]
    out = []
    for spec in specs:
        net.calibrate_bn(spec, ds.batches("train", 128), max_batches=2)
        with torch.no_grad(), net.use(spec):
            acc = 100.0 * float((net(x_test).argmax(1) == y_test).float().mean())
        out.append(spec.with_accuracy(test=acc))
    save_checkpoint(
        path, net=net, arch="resnet20", arch_kwargs=kwargs, subnets=out, input_shape=ds.input_shape,
        mean=ds.mean, std=ds.std, dataset="fashion-mnist", config={"steps": steps, "test_slice": TEST_SLICE},
    )
    return TrainedModel(path=path, test_slice=TEST_SLICE, subnet_names=[s.name for s in out])


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch thread: on this 2-core machine, shared with other jobs, 2 threads ran ~5x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """A resnet20 (widths 8/16/32) trained a few dozen steps on Fashion-MNIST with 3 nested sub-nets."""
    with one_torch_thread():  # session fixtures are set up before the module-scoped autouse one
        return _train(tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture(scope="session")
def exported_artifact(trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory):
    """``(artifact_dir, ExportResult)`` of the default export of ``trained_model`` (do not modify it)."""
    from slimrt.exporters import ExportOptions, export_artifact

    out = tmp_path_factory.mktemp("export") / "resnet20.slim"
    with one_torch_thread():
        result = export_artifact(trained_model.path, out, ExportOptions())
    return out, result
