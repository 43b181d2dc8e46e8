"""What a ``slimrt train`` run will do, before it does it: steps per phase and a rough time estimate.

``slimrt train --dry-run`` loads the data, builds the network, times a few full-network training steps on real
batches (cheap: a handful of steps) and prints :class:`TrainPlan`. Estimates scale that per-image time by the MACs
each phase trains per step (a sandwich step trains the largest, the smallest and ``sampled_subnets`` sub-nets in
between, counted here at their average of full and ``min_macs``), so they are rough: ±50% is typical.
"""

from __future__ import annotations

import math
import time

from pydantic import BaseModel, ConfigDict, Field

from slimrt.train.config import AUTO_EPOCHS, SearchConfig, SearchSteps

__all__ = ["PhasePlan", "TrainPlan", "plan_training"]


class PhasePlan(BaseModel):
    """One phase: optimiser steps (``up_to``: an upper bound), images per step and estimated seconds."""

    model_config = ConfigDict(extra="forbid")

    phase: str
    steps: int
    batch_size: int
    up_to: bool = False
    note: str = ""
    seconds: float | None = None


class TrainPlan(BaseModel):
    """The phases of a run with their step counts, and the measured time of one full-network training step."""

    model_config = ConfigDict(extra="forbid")

    arch: str
    dataset: str
    method: str
    train_images: int
    steps_per_epoch: int
    full_macs: int
    seconds_per_full_step: float | None = None
    phases: list[PhasePlan] = Field(default_factory=list)
    search_steps: SearchSteps | None = Field(None, description="progressive: the step counts the search will run")

    @property
    def total_seconds(self) -> float | None:
        secs = [p.seconds for p in self.phases if p.seconds is not None]
        return sum(secs) if secs else None

    def lines(self) -> list[str]:
        """Plain lines for the terminal or a log file."""
        from slimrt.progress import format_seconds

        head = (f"plan: {self.arch} on {self.dataset} ({self.train_images} training images, {self.steps_per_epoch} "
                f"steps per epoch), method {self.method}, full network {self.full_macs:,} MACs")  # fmt: skip
        out = [head]
        if self.seconds_per_full_step is not None:
            out.append(f"measured: {self.seconds_per_full_step:.3f} s per full-network training step")
        for p in self.phases:
            est = "" if p.seconds is None else f", ~{format_seconds(p.seconds)}"
            bound = "up to " if p.up_to else ""
            note = f" ({p.note})" if p.note else ""
            out.append(f"  {p.phase}: {bound}{p.steps:,} steps of {p.batch_size} images{est}{note}")
        if self.search_steps is not None:
            out.append("  " + self.search_steps.describe())
        if self.total_seconds is not None:
            out.append(f"estimated total: ~{format_seconds(self.total_seconds)} (rough; upper bounds included)")
        return out


def _time_full_steps(net: object, data: object, cfg: SearchConfig, steps: int) -> float | None:
    """Seconds of one full-network forward+backward+SGD step at ``cfg.batch_size`` (median after one warm-up)."""
    import copy

    from slimrt.train.loops import fixed_sampler, joint_step, make_optimizer, prepare_input, wants_channels_last

    if steps <= 0:
        return None
    trial = copy.deepcopy(net)  # the timing steps must not change the network a real run would start from
    opt = make_optimizer(trial, cfg.lr, cfg.momentum, cfg.weight_decay)
    spec = fixed_sampler([trial.full_spec()])(0)  # type: ignore[attr-defined]
    dev = next(trial.parameters()).device  # type: ignore[attr-defined]
    cl = wants_channels_last(trial)  # type: ignore[arg-type]
    times = []
    trial.train()  # type: ignore[attr-defined]
    for i, (xb, yb) in enumerate(data.batches("train", cfg.batch_size, drop_last=True)):  # type: ignore[attr-defined]
        if i > steps:
            break
        xb, yb = prepare_input(xb, dev, cl), yb.to(dev)
        t0 = time.perf_counter()
        joint_step(trial, opt, xb, yb, spec, distill=False)  # type: ignore[arg-type]
        if i > 0:
            times.append(time.perf_counter() - t0)
    if not times:
        return None
    times.sort()
    return times[len(times) // 2]


def plan_training(cfg: SearchConfig, measure_steps: int = 3) -> TrainPlan:
    """Load the data, build the network and count the steps of every phase ``cfg`` will run.

    Args:
        measure_steps: full-network training steps to time (after one warm-up step); 0 skips the estimate.
    """
    from slimrt.train.data import load_dataset
    from slimrt.train.imagefolder import image_options
    from slimrt.train.loops import steps_per_epoch
    from slimrt.train.trainer import build_net

    data = load_dataset(cfg.dataset, root=cfg.data_dir, val_size=cfg.val_size, limit_train=cfg.limit_train,
                        seed=cfg.seed, image_options=image_options(cfg))  # fmt: skip
    net = build_net(cfg, data)
    spe = steps_per_epoch(data, cfg.batch_size)
    per_step = _time_full_steps(net, data, cfg, measure_steps) if len(data.y_train) >= cfg.batch_size else None
    mid = (1.0 + cfg.min_macs) / 2
    sandwich = 1.0 + cfg.min_macs + cfg.sampled_subnets * mid  # full-step equivalents of one sandwich step

    def est(steps: int, factor: float, batch: int | None = None) -> float | None:
        if per_step is None:
            return None
        return steps * factor * per_step * (batch or cfg.batch_size) / cfg.batch_size

    phases: list[PhasePlan] = []
    if cfg.init:
        phases.append(PhasePlan(phase="pretrain", steps=0, batch_size=cfg.batch_size, note=f"--init {cfg.init}"))
    elif cfg.method != "independent" and cfg.pretrain_epochs > 0:
        n = cfg.pretrain_epochs * spe
        phases.append(PhasePlan(phase="pretrain", steps=n, batch_size=cfg.batch_size, seconds=est(n, 1.0),
                                note=f"{cfg.pretrain_epochs} epochs, full network"))  # fmt: skip
    search = None
    if cfg.method == "progressive":
        search = cfg.search_steps(len(data.y_train))

        def given(name: str) -> str:
            return f"auto: at most {AUTO_EPOCHS} epochs" if name in search.auto else "as given"

        cands = max(1, math.ceil((1 - cfg.min_macs) / cfg.macs_step - 1e-9))
        if cfg.ranking == "noise":
            n = cands * search.noise_steps
            phases.append(PhasePlan(phase="search ranking", steps=n, batch_size=cfg.noise_batch_size, up_to=True,
                                    seconds=est(n, mid, cfg.noise_batch_size),
                                    note=f"{cands} candidates x {search.noise_steps} noise steps "
                                    f"({given('noise_steps')})"))  # fmt: skip
        never = search.finetune_steps == 0 or (math.isinf(cfg.threshold) and not cfg.finetune_always)
        ft = 0 if never else search.finetune_steps
        if ft:
            n = cands * ft
            why = "every candidate" if cfg.finetune_always else f"candidates dropping > {cfg.threshold} points"
            phases.append(PhasePlan(phase="search fine-tunes", steps=n, batch_size=cfg.batch_size,
                                    up_to=not cfg.finetune_always, seconds=est(n, sandwich),
                                    note=f"{ft} steps after {why} ({given('finetune_steps')})"))  # fmt: skip
        n = cfg.epochs * spe
        note = f"{cfg.epochs} epochs, {cfg.subnets} sub-nets (sandwich)"
        if cfg.budget_macs is not None:
            note += "; the MACs budget replaces this with what the search leaves"
        phases.append(PhasePlan(phase="finetune", steps=n, batch_size=cfg.batch_size, seconds=est(n, sandwich),
                                note=note))  # fmt: skip
    elif cfg.method == "usnet":
        n = cfg.epochs * spe
        phases.append(PhasePlan(phase="usnet", steps=n, batch_size=cfg.batch_size, seconds=est(n, sandwich),
                                note=f"{cfg.epochs} epochs (sandwich over widths)"))  # fmt: skip
    else:
        n = cfg.subnets * cfg.pretrain_epochs * spe
        phases.append(PhasePlan(phase="independent", steps=n, batch_size=cfg.batch_size, seconds=est(n, mid),
                                note=f"{cfg.subnets} sub-nets x {cfg.pretrain_epochs} epochs"))  # fmt: skip
    return TrainPlan(arch=cfg.arch, dataset=data.name, method=cfg.method, train_images=len(data.y_train),
                     steps_per_epoch=spe, full_macs=net.macs(), seconds_per_full_step=per_step,
                     phases=phases, search_steps=search)  # fmt: skip
