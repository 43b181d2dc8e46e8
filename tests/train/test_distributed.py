"""Data-parallel training: two CPU processes (gloo) agree with each other and with one process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from slimrt.train import distributed
from slimrt.train.distributed import DistInfo, init_distributed, reduce_metrics, shard, wrap

WORLD = 2
EPOCHS = 1


def _setup(dtype: torch.dtype = torch.float32):
    """Net, data and config of the DDP comparison; ``dtype=torch.float64`` builds them in double precision."""
    import dataclasses

    from slimrt.models import create_model
    from slimrt.train import DynamicNet
    from slimrt.train.config import SearchConfig
    from slimrt.train.data import load_dataset

    torch.set_num_threads(1)
    data = load_dataset("synthetic", val_size=64, limit_train=192, seed=0)
    data = dataclasses.replace(data, **{
        f.name: getattr(data, f.name).to(dtype) for f in dataclasses.fields(data)
        if isinstance(getattr(data, f.name), torch.Tensor) and getattr(data, f.name).is_floating_point()
    })  # fmt: skip
    torch.manual_seed(0)
    model = create_model("resnet20", in_channels=1, num_classes=10, widths=(8, 8, 16)).to(dtype)
    net = DynamicNet(model, torch.zeros(1, 1, 16, 16, dtype=dtype))
    cfg = SearchConfig.build({"batch_size": 32, "finetune_lr": 0.05, "seed": 0, "augment": True, "distill": True})
    return net, data, cfg


def _worker(rank: int, port: int, out_dir: str) -> None:
    """Both scenarios in one pair of processes (spawning is the slow part): joint steps, then ``run_training``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))  # fmt: skip
    info = init_distributed("cpu")
    try:
        _joint_steps(rank, info, out_dir)
        _train_run(rank, out_dir)
    finally:
        distributed.cleanup()


def _joint_steps(rank: int, info: DistInfo, out_dir: str) -> None:
    from slimrt.train.loops import train_epochs
    from slimrt.train.methods.usnet import usnet_sampler

    net, data, cfg = _setup(torch.float64)  # float64: see test_two_process_ddp_matches_single_process
    if rank == 1:  # a different start on rank 1: DDP must broadcast rank 0's weights
        with torch.no_grad():
            net.model.conv1.weight.add_(1.0)
    fwd = wrap(net, info)
    sampler = usnet_sampler(net, cfg.seed)
    train_epochs(net, data, sampler, EPOCHS, cfg, lr=cfg.finetune_lr, phase="ddp", forward=fwd,
                 batch_transform=lambda x, y: shard(x, y, info=info))  # fmt: skip
    # sharded evaluation, summed over ranks
    net.eval()
    xs, ys = shard(data.x_test, data.y_test, info=info)
    with torch.no_grad():
        correct = float((net(xs).argmax(1) == ys).sum())
    metrics = reduce_metrics({"correct": correct, "count": float(len(ys))}, info=info)
    state = {k: v.clone() for k, v in net.model.state_dict().items()}
    torch.save({"state": state, "metrics": metrics, "info": (info.rank, info.world_size, info.is_main)},
               Path(out_dir) / f"rank{rank}.pt")  # fmt: skip


def _reference(grad_scale: float = 1.0 / WORLD):
    """One process over the same global batches: each rank's slice handled in turn, gradients averaged.

    ``grad_scale`` multiplies each slice's loss: ``1 / WORLD`` is DDP's averaging; anything else is a wrong one.
    """
    from slimrt.train.loops import cosine_lr, make_generator, make_optimizer, set_lr, soft_cross_entropy
    from slimrt.train.methods.usnet import usnet_sampler

    net, data, cfg = _setup(torch.float64)
    sampler = usnet_sampler(net, cfg.seed)
    opt = make_optimizer(net, cfg.finetune_lr, cfg.momentum, cfg.weight_decay)
    spe = len(data.y_train) // cfg.batch_size
    net.train()
    step = 0
    for epoch in range(EPOCHS):
        g = make_generator(cfg.seed, "ddp", "epoch", epoch)
        for xb, yb in data.batches("train", cfg.batch_size, shuffle=True, augment=True, generator=g, drop_last=True):
            set_lr(opt, cosine_lr(step, EPOCHS * spe, cfg.finetune_lr))
            opt.zero_grad(set_to_none=True)
            specs = sorted(sampler(step), key=lambda s: -s.macs)
            for x, y in zip(torch.tensor_split(xb, WORLD), torch.tensor_split(yb, WORLD), strict=True):
                soft = None
                for j, spec in enumerate(specs):
                    with net.use(spec):
                        out = net(x)
                    if j == 0:
                        loss = F.cross_entropy(out, y)
                        soft = F.softmax(out.detach(), dim=1)
                    else:
                        loss = soft_cross_entropy(out, soft)
                    (loss * grad_scale).backward()
            opt.step()
            step += 1
    return net, data


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def spawned(tmp_path_factory) -> Path:
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ddp")
    (out / "train").mkdir()
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(spawned):
    tmp_path = spawned
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert tuple(r0["info"]) == (0, 2, True) and tuple(r1["info"]) == (1, 2, False)
    params = [k for k, v in r0["state"].items() if v.is_floating_point() and "running" not in k]
    assert params
    for k in params:
        assert torch.equal(r0["state"][k], r1["state"][k]), k  # the ranks agree exactly

    # Why float64 and why this bound. DDP sums the two ranks' gradients (all-reduce) and divides by 2; the reference
    # accumulates each half's gradient / 2 in turn. Both are exact in real arithmetic; they differ only by rounding,
    # whose order depends on the CPU's SIMD width (oneDNN / MKL pick different kernels on AVX2 vs AVX-512), so a
    # float32 bound tuned on one CPU (2e-5) failed on another. In float64 the unit roundoff is u = 1.1e-16; one
    # step sums at most ~1e4 products per weight (a 3x3x16-channel conv over a 16-image 16x16 slice), giving a
    # relative error of at most ~1e4 * u = 1e-12 per step, and the 6 SGD steps with batch norm amplify a
    # perturbation by far less than 1e3 (measured on an AMD EPYC: largest gap 1.1e-16). So 1e-9 (absolute, weights
    # are O(1)) holds on any IEEE-754 CPU with a wide margin, while a real divergence is 1e-4 or more: a wrong
    # gradient averaging (sum instead of mean) is checked below to exceed the bound by orders of magnitude.
    atol, rtol = 1e-9, 1e-9
    n_threads = torch.get_num_threads()
    try:
        ref, data = _reference()
        wrong, _ = _reference(grad_scale=1.0)  # gradients summed over ranks, not averaged
        init, _, _ = _setup(torch.float64)
    finally:
        torch.set_num_threads(n_threads)
    ref_state, init_state, wrong_state = ref.model.state_dict(), init.model.state_dict(), wrong.model.state_dict()
    for k in params:
        assert r0["state"][k].dtype == torch.float64, k
        torch.testing.assert_close(r0["state"][k], ref_state[k], atol=atol, rtol=rtol, msg=k)
    # the bound can fail: a wrong averaging is far outside it
    gap = max(float((wrong_state[k] - r0["state"][k]).abs().max()) for k in params)
    assert gap > 1e3 * atol, gap
    # training really moved the weights (the comparison above is not between two untouched copies)
    assert any(not torch.allclose(init_state[k], ref_state[k], atol=1e-3) for k in params)
    m0, m1 = r0["metrics"], r1["metrics"]
    assert m0 == m1 and m0["count"] == len(data.y_test)
    assert 0.0 <= m0["correct"] <= 1.0


def _train_run(rank: int, out_dir: str) -> None:
    from slimrt.train.config import SearchConfig
    from slimrt.train.trainer import run_training

    torch.set_num_threads(1)
    cfg = SearchConfig.build({
        "arch": "resnet20", "arch_kwargs": {"widths": [8, 8, 16]}, "dataset": "synthetic", "method": "progressive",
        "limit_train": 128, "val_size": 64, "batch_size": 32, "pretrain_epochs": 1, "epochs": 1, "subnets": 2,
        "macs_step": 0.45, "min_macs": 0.3, "noise_steps": 2, "finetune_steps": 2, "calib_batches": 1,
        "finetune_always": True, "out": str(Path(out_dir) / "train" / "model.pt"),
    })  # fmt: skip
    result = run_training(cfg)  # joins the already initialised process group
    (Path(out_dir) / f"result{rank}.json").write_text(result.model_dump_json())


@pytest.mark.slow
def test_trainer_under_two_ranks_agrees_and_rank0_writes(spawned):
    """``slimrt train`` as torchrun runs it: both ranks take the same search decisions; one model.pt is written."""
    import json

    from slimrt.train.checkpoint import load_checkpoint

    tmp_path = spawned
    r0, r1 = (json.loads((tmp_path / f"result{r}.json").read_text()) for r in range(WORLD))
    assert r0["subnets"] == r1["subnets"]  # same widths, MACs and accuracies on both ranks
    assert r0["report"]["finetunes"] == r1["report"]["finetunes"] >= 1  # fine-tunes went through DDP
    assert len(r0["subnets"]) == 2
    files = sorted(p.name for p in (tmp_path / "train").iterdir())
    assert files == ["model.pt"]  # no leftover resume file
    ckpt = load_checkpoint(tmp_path / "train" / "model.pt")
    assert [s.name for s in ckpt.subnets] == [s["name"] for s in r0["subnets"]]


def test_single_process_is_a_no_op(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(0, 1, 0, True) and not info.enabled
    net = torch.nn.Linear(2, 2)
    assert wrap(net, info) is net
    x, y = torch.arange(10), torch.arange(10)
    assert shard(x, y, info=info) == (x, y)
    assert reduce_metrics({"correct": 3.0, "count": 4.0}, info=info) == {"correct": 0.75, "count": 4.0}
    assert distributed.all_reduce_sum(2.5, info) == 2.5


def test_shard_splits_the_global_batch_by_rank():
    x = torch.arange(10)
    parts = [shard(x, info=DistInfo(r, 3, r, r == 0))[0] for r in range(3)]
    assert torch.equal(torch.cat(parts), x)
    assert [len(p) for p in parts] == [4, 3, 3]


def test_bad_environment_is_reported(monkeypatch):
    from slimrt.errors import ConfigError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ConfigError, match="RANK must be in"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        init_distributed("cpu")
