"""Orchestration of ``slimrt train``: data, model, pre-training (or ``--init``), the method, resumable checkpoints,
and the final ``model.pt``.

Phases: ``pretrain`` (full network, per-epoch checkpoints) -> method. For ``progressive`` the search writes a
checkpoint after every candidate, after re-selection and after every fine-tuning epoch. Checkpoints go to
``<out>.resume.pt`` (atomic: temp file + rename) and hold weights, channel order, per-sub-net BN statistics,
optimiser state, search state, compute meter and timings; ``--resume`` continues from there and reproduces the
uninterrupted run on CPU (every random draw is keyed by seed, phase and step). The file is removed once
``model.pt`` is written.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import Progress

from slimrt.errors import CheckpointError, ConfigError
from slimrt.io import atomic_write_bytes
from slimrt.schema import SubnetSpec
from slimrt.train import distributed
from slimrt.train.config import SearchConfig
from slimrt.train.data import Dataset, load_dataset
from slimrt.train.dynamic import DynamicNet
from slimrt.train.loops import ComputeMeter, fixed_sampler, make_optimizer, seed_everything, train_epochs
from slimrt.train.methods import DDPArgs, MethodContext, get_method

__all__ = ["TrainResult", "build_net", "load_init", "run_training", "RESUME_FORMAT", "RUN_ONLY_FIELDS"]

log = logging.getLogger(__name__)

RESUME_FORMAT = "slimrt-resume"
RUN_ONLY_FIELDS = frozenset({"resume", "device", "out", "init", "force", "workers"})
"""Config fields that may differ between an interrupted run and its resumption."""

Hook = Callable[[str], None]


class TrainResult(BaseModel):
    """Outcome of ``slimrt train`` (what the CLI renders or dumps as JSON)."""

    model_config = ConfigDict(extra="forbid")

    out: str
    arch: str
    dataset: str
    method: str
    full_macs: int
    full_params: int
    subnets: list[SubnetSpec]
    report: dict[str, Any] = Field(default_factory=dict)
    compute: dict[str, Any] = Field(default_factory=dict)
    seconds: float
    resumed: bool = False


def _arch_kwargs(cfg: SearchConfig, data: Dataset) -> dict[str, Any]:
    return {"in_channels": data.input_shape[0], "num_classes": data.num_classes, **cfg.arch_kwargs}


def _device(cfg: SearchConfig) -> torch.device:
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device}: CUDA is not available here (use --device cpu)")
    return dev


def build_net(cfg: SearchConfig, data: Dataset) -> DynamicNet:
    """The model named by ``cfg.arch`` (registry or user import path), wrapped in a :class:`DynamicNet`."""
    from slimrt.models import create_model

    seed_everything(cfg.seed)
    model = create_model(cfg.arch, **_arch_kwargs(cfg, data))
    net = DynamicNet(model, torch.zeros(1, *data.input_shape))
    net.to(_device(cfg))
    if cfg.use_channels_last():
        net.to(memory_format=torch.channels_last)
    return net


def load_init(net: DynamicNet, path: str | Path, arch: str | None = None) -> None:
    """Load trained full-network weights: a slimrt ``model.pt``, or a plain / wrapped ``state_dict`` (DDP prefixes
    stripped); see :mod:`slimrt.train.state_dicts`."""
    from slimrt.train.state_dicts import find_state_dict, load_state_dict_strict

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--init {path}: no such file")
    from slimrt.train.checkpoint import _torch_load

    try:
        obj = _torch_load(path)  # weights_only=True; pickled code refused in one line, not torch's advice
    except CheckpointError as e:
        raise CheckpointError(f"--init {e}") from None
    sd, order = find_state_dict(obj, f"--init {path}")
    load_state_dict_strict(net.model, sd, f"--init {path}", f"--arch {arch}" if arch else "this architecture")
    if isinstance(order, Mapping):
        net.load_extra_state(channel_order={str(k): list(v) for k, v in order.items()})
    log.info("loaded full-network weights from %s", path)


# ---------------------------------------------------------------------------------------------- resume files


def _save_resume(path: Path, cfg: SearchConfig, net: DynamicNet, meter: ComputeMeter, phase: str,
                 extra: dict[str, Any]) -> None:  # fmt: skip
    payload = {
        "format": RESUME_FORMAT,
        "version": 1,
        "config": cfg.model_dump(),
        "phase": phase,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.model.state_dict().items()},
        "channel_order": {g: list(o) for g, o in net.channel_order.items()},
        "bn_stats": {s: {m: {k: t.detach().cpu().clone() for k, t in st.items()} for m, st in per.items()}
                     for s, per in net.bn_stats.items()},  # fmt: skip
        "meter": meter.state_dict(),
        **extra,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_resume(path: Path, cfg: SearchConfig) -> dict[str, Any]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"resume file {path} is unreadable ({e}); delete it to start over") from e
    if not isinstance(obj, dict) or obj.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{path} is not a slimrt resume file; delete it to start over")
    saved = SearchConfig.build(obj["config"], source=str(path))
    diff = sorted(k for k in SearchConfig.model_fields
                  if k not in RUN_ONLY_FIELDS and getattr(saved, k) != getattr(cfg, k))  # fmt: skip
    if diff:
        shown = ", ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(cfg, k)!r}" for k in diff)
        raise ConfigError(f"--resume: the settings differ from the interrupted run ({shown}); "
                          f"rerun with the same settings or delete {path}")  # fmt: skip
    return obj


def _restore(net: DynamicNet, meter: ComputeMeter, obj: dict[str, Any]) -> None:
    net.model.load_state_dict(obj["state_dict"], strict=True)
    dev = next(net.parameters()).device
    stats = {s: {m: {k: t.to(dev) for k, t in st.items()} for m, st in per.items()}
             for s, per in obj["bn_stats"].items()}  # fmt: skip
    net.load_extra_state(channel_order=obj["channel_order"], bn_stats=stats)
    meter.load_state_dict(obj["meter"])


# ----------------------------------------------------------------------------------------------------- training


def run_training(cfg: SearchConfig, progress: Progress | None = None, hook: Hook | None = None) -> TrainResult:
    """Run ``slimrt train`` with ``cfg``: returns the sub-nets written to ``cfg.out``.

    Args:
        progress: rich progress display for the phases (None: silent).
        hook: called with an event name (``pretrain-epoch-N``, ``search``, ...) after every resume checkpoint;
            raising from it interrupts the run like a crash would (tests use it).
    """
    from slimrt.train.checkpoint import save_checkpoint

    t0 = time.perf_counter()
    cfg.check_out()  # before any work: a bad --out must not cost a whole training run
    info = distributed.init_distributed(cfg.device)  # no-op unless launched by torchrun
    from slimrt.train.imagefolder import image_options

    data = load_dataset(cfg.dataset, root=cfg.data_dir, val_size=cfg.val_size, limit_train=cfg.limit_train,
                        seed=cfg.seed, image_options=image_options(cfg))  # fmt: skip
    if len(data.y_train) < cfg.batch_size:
        raise ConfigError(f"{data.name} has {len(data.y_train)} training images, fewer than --batch-size "
                          f"{cfg.batch_size}")  # fmt: skip
    net = build_net(cfg, data)
    if progress is not None and info.is_main and cfg.method == "progressive":  # what the search will run, up front
        progress.console.print(cfg.search_steps(len(data.y_train)).describe(), markup=False, highlight=False,
                               soft_wrap=True)
    meter = ComputeMeter()
    resume_path = cfg.resume_path()
    resume = None
    if cfg.resume and resume_path.exists():
        resume = _load_resume(resume_path, cfg)
        _restore(net, meter, resume)
        log.info("resuming %s from phase %s", resume_path, resume["phase"])
    elif cfg.resume:
        log.warning("--resume: no %s yet, starting from the beginning", resume_path)
    timings: dict[str, float] = dict(resume.get("timings", {})) if resume else {}
    # Under torchrun: DDP wrapper for training forwards, each rank keeps its slice of every global batch.
    ddp = DDPArgs()
    if info.enabled:
        ddp = DDPArgs(forward=distributed.wrap(net, info), wrap=lambda m: distributed.wrap(m, info),
                      batch_transform=lambda x, y: distributed.shard(x, y, info=info))  # fmt: skip
    method = get_method(cfg.method)

    resumed = resume is not None

    def save(phase: str, extra: dict[str, Any], event: str | None = None) -> None:
        if info.is_main:  # only rank 0 writes files
            _save_resume(resume_path, cfg, net, meter, phase, {"timings": timings, **extra})
        if hook is not None:
            hook(event or phase)

    # ---- pre-training of the full network
    phase = resume["phase"] if resume else "pretrain"
    if phase == "pretrain":
        if cfg.init:
            load_init(net, cfg.init, cfg.arch)
        elif cfg.pretrain_epochs > 0 and method.pretrain:
            start = int(resume.get("epoch", 0)) if resume else 0
            opt = make_optimizer(net, cfg.lr, cfg.momentum, cfg.weight_decay)
            if resume and resume.get("optimizer") is not None:
                opt.load_state_dict(resume["optimizer"])
            t_start = time.perf_counter()

            def epoch_done(epoch: int, o: torch.optim.Optimizer) -> None:
                nonlocal t_start
                timings["pretrain"] = timings.get("pretrain", 0.0) + time.perf_counter() - t_start
                t_start = time.perf_counter()
                save("pretrain", {"epoch": epoch + 1, "optimizer": o.state_dict()}, f"pretrain-epoch-{epoch + 1}")

            if start < cfg.pretrain_epochs:
                train_epochs(net, data, fixed_sampler([net.full_spec()]), cfg.pretrain_epochs, cfg, progress, meter,
                             lr=cfg.lr, warmup_epochs=cfg.warmup_epochs, phase="pretrain", optimizer=opt,
                             start_epoch=start, on_epoch_end=epoch_done, forward=ddp.forward,
                             batch_transform=ddp.batch_transform)  # fmt: skip
        resume = None if phase == "pretrain" else resume
        save("search", {"search": None, "optimizer": None}, "pretrained")

    # ---- the method
    t_method = time.perf_counter()
    ctx = MethodContext(cfg=cfg, data=data, net=net, progress=progress, meter=meter, resume=resume, ddp=ddp,
                        save=lambda state, event: save("search", state, event))  # fmt: skip
    specs, report = method.run(ctx)
    timings["method"] = timings.get("method", 0.0) + time.perf_counter() - t_method
    report_dict = report.model_dump()
    kwargs = dict(_arch_kwargs(cfg, data))
    if info.is_main:  # only rank 0 writes files
        save_checkpoint(
            cfg.out, net=net, arch=cfg.arch, arch_kwargs=kwargs, subnets=specs, input_shape=data.input_shape,
            mean=data.mean, std=data.std, dataset=data.name, config=cfg.model_dump(),
            extra={"method": cfg.method, "report": report_dict, "compute": meter.state_dict(), "timings": timings,
                   "world_size": info.world_size, **_latency_extra(cfg),
                   **({"image_folder": {**data.preprocess, "train_augmentation": data.augmentation(
                       cfg.augment, cfg.flip)}} if data.preprocess else {})},
        )  # fmt: skip
        resume_path.unlink(missing_ok=True)
    distributed.barrier(info)
    return TrainResult(
        out=str(cfg.out), arch=cfg.arch, dataset=data.name, method=cfg.method, full_macs=net.macs(),
        full_params=net.params(), subnets=specs, report=report_dict, compute=meter.state_dict(),
        seconds=time.perf_counter() - t0, resumed=resumed,
    )  # fmt: skip


def _latency_extra(cfg: SearchConfig) -> dict[str, Any]:
    """The latency table the search used (its cost, or where it placed the final sub-nets), stored with the
    checkpoint (export copies it to the manifest, with each sub-net's predicted latency)."""
    if cfg.latency_table is None or cfg.method != "progressive":  # only progressive checks the table against the net
        return {}
    from slimrt.train.latency import load_latency_table

    return {"latency_table": load_latency_table(cfg.latency_table).model_dump(mode="json")}
