"""``slimrt train``: search and train nested sub-nets (progressive search, or the US-Nets / independent baselines)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["train"]


def _fractions(text: str | None) -> list[float] | None:
    if text is None:
        return None
    from slimrt.errors import ConfigError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--macs-targets takes comma-separated fractions such as 1,0.5,0.25, not {text!r}") from None


def _latency_targets(text: str | None) -> tuple[list[float] | None, list[float] | None]:
    """``--latency-targets``: fractions of the full predicted latency (``1,0.6,0.45``) or milliseconds
    (``0.9ms,0.6ms,0.45ms``) -> (fractions, ms)."""
    if text is None:
        return None, None
    from slimrt.errors import ConfigError

    items = [v.strip().lower() for v in text.split(",") if v.strip()]
    in_ms = [v.endswith("ms") for v in items]
    try:
        if all(in_ms):
            return None, [float(v[:-2]) for v in items]
        if not any(in_ms):
            return [float(v) for v in items], None
    except ValueError:
        pass
    raise ConfigError(f"--latency-targets takes fractions of the full network's predicted latency (1,0.6,0.45) or "
                      f"milliseconds (0.9ms,0.6ms,0.45ms), all in one unit, not {text!r}")  # fmt: skip


def _floats(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    from slimrt.errors import ConfigError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated numbers such as 0.485,0.456,0.406, not {text!r}") from None


def _render(result: Any, console: Any) -> None:
    from rich.table import Table

    full = result.full_macs
    table = Table(title=f"slimrt train: {result.arch} on {result.dataset}, {result.method} -> {result.out}")
    for col, just in (("sub-net", "left"), ("MACs", "right"), ("params", "right"), ("MACs %", "right"),
                      ("val acc %", "right"), ("test acc %", "right")):  # fmt: skip
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for s in result.subnets:
        acc = (lambda v: "" if v is None else f"{v:.2f}")  # noqa: E731
        table.add_row(s.name, f"{s.macs:,}", f"{s.params:,}", f"{100 * s.macs / full:.1f}", acc(s.val_accuracy),
                      acc(s.test_accuracy))  # fmt: skip
    console.print(table)
    rep = result.report
    cands = rep.get("candidates") or []
    if cands:
        ct = Table(title=f"search: {len(cands)} candidates, {rep.get('finetunes', 0)} fine-tunes "
                         f"(ranking {rep.get('ranking')}, threshold {rep.get('threshold')} points)")  # fmt: skip
        for col in ("candidate", "MACs %", "val acc %", "fine-tuned", "val after", "final val %", "selected"):
            ct.add_column(col, justify="left" if col == "candidate" else "right")
        selected = set(rep.get("selected", []))
        for c in cands:
            after = c.get("val_after_finetune")
            final = c.get("final_val_accuracy")
            name = c["spec"]["name"]
            ct.add_row(name, f"{100 * c['macs_fraction']:.1f}", f"{c['val_accuracy']:.2f}",
                       "yes" if c.get("finetuned") else "", "" if after is None else f"{after:.2f}",
                       "" if final is None else f"{final:.2f}", "*" if name in selected else "")  # fmt: skip
        console.print(ct)
    comp = result.compute
    console.print(
        f"compute: {comp.get('train_macs', 0) / 1e12:.3f} TMACs training (3 x forward MACs), "
        f"{comp.get('other_macs', 0) / 1e12:.3f} TMACs ranking/calibration/evaluation; wall {result.seconds:.0f} s"
        + (" (resumed)" if result.resumed else "")
    )


def train(
    arch: Annotated[str | None, typer.Option(help="Model: registry name (resnet20, ...) or package.module:factory.")]
    = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="Dataset: fashion-mnist, a folder of Fashion-MNIST IDX files, a folder of class sub-folders "
        "of images (optionally under train/ and val/), synthetic, or an .npz path.")]
    = None,
    data_dir: Annotated[str | None, typer.Option(hidden=True, help="Old spelling of --data DIR.")] = None,
    method: Annotated[str | None, typer.Option(help="progressive (default), usnet or independent.")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file of SearchConfig fields; flags override it.")] = None,
    pretrain_epochs: Annotated[int | None, typer.Option(help="Epochs of full-network pre-training.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of final joint fine-tuning.")] = None,
    subnets: Annotated[int | None, typer.Option(help="K: how many nested sub-nets to produce.")] = None,
    min_macs: Annotated[float | None, typer.Option(help="Smallest sub-net, fraction of the full MACs.")] = None,
    macs_step: Annotated[float | None, typer.Option(help="MACs removed per search step (fraction of full).")] = None,
    macs_targets: Annotated[str | None, typer.Option(help="Pick sub-nets at these MACs fractions, e.g. 1,0.5,0.2.")]
    = None,
    group_size: Annotated[int | None, typer.Option(help="Channels per unit (ranked and removed together).")] = None,
    min_units: Annotated[int | None, typer.Option(
        help="Groups narrower than MIN_UNITS x group size get smaller units (default 4: a 16-channel group is cut "
             "4 channels at a time). 2 keeps every width of the groups of 16 channels or more a multiple of the "
             "group size: with 8, what ONNX Runtime's blocked convolutions run fastest on x86 CPUs.")] = None,
    supernet_epochs: Annotated[int | None, typer.Option(help="Epochs of non-uniform supernet warm start before "
                                                              "the search (progressive).")] = None,
    cost: Annotated[str | None, typer.Option(help="Search cost: macs (default) or latency (needs --latency-table).")]
    = None,
    latency_table: Annotated[str | None, typer.Option(help="Latency table JSON from `slimrt latency-table`: the "
                                                       "cost of --cost latency, where --latency-targets place the "
                                                       "sub-nets, and each sub-net's predicted latency.")] = None,
    latency_targets: Annotated[
        str | None, typer.Option(help="Pick sub-nets at these fractions of the full predicted latency (1,0.6,0.45) "
                                 "or at these predicted milliseconds (0.9ms,0.6ms,0.45ms); needs --latency-table. "
                                 "With --cost macs the search still ranks by MACs and goes down to the smallest "
                                 "target (--min-macs does not apply).")
    ] = None,
    usnet_min_width: Annotated[float | None, typer.Option(help="usnet: the narrowest trained width multiplier "
                                                          "(default 0.25); lower it to serve smaller sub-nets.")]
    = None,
    threshold: Annotated[float | None, typer.Option(help="Fine-tune when val accuracy drops more (points).")] = None,
    noise_steps: Annotated[int | None, typer.Option(help="Noise-ranking steps per candidate (default 100, at most 2 "
                                                    "epochs of the data, at least 20).")] = None,
    finetune_steps: Annotated[int | None, typer.Option(help="Steps of each fine-tune in the search (default 100, "
                                                       "at most 2 epochs of the data, at least 10).")] = None,
    calib_batches: Annotated[int | None, typer.Option(help="Batches for BN calibration (default 20, one pass at "
                                                      "most).")] = None,
    finetune_always: Annotated[bool, typer.Option("--finetune-always", help="Ablation: fine-tune every step.")]
    = False,
    ranking: Annotated[str | None, typer.Option(help="Unit ranking: noise, l1, bn or random.")] = None,
    no_reselect: Annotated[bool, typer.Option("--no-reselect", help="Take K candidates evenly by index.")] = False,
    keep_full: Annotated[bool, typer.Option("--keep-full", help="Re-selection always keeps the full network as the "
                                            "largest sub-net (the top of the latency range), even when a smaller "
                                            "candidate validates as well.")] = False,
    no_distill: Annotated[bool, typer.Option("--no-distill", help="Plain cross-entropy for every sub-net.")] = False,
    seed: Annotated[int | None, typer.Option(help="Random seed (runs are deterministic on CPU).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate of pre-training.")] = None,
    finetune_lr: Annotated[float | None, typer.Option(help="Peak learning rate of the final fine-tuning.")] = None,
    limit_train: Annotated[int | None, typer.Option(help="Use only the first N training images (smoke runs).")]
    = None,
    val_size: Annotated[int | None, typer.Option(help="Validation images carved from the training set.")] = None,
    input_size: Annotated[int | None, typer.Option(help="Image folders: square input side (resize + center-crop).")]
    = None,
    grayscale: Annotated[bool | None, typer.Option("--grayscale/--rgb", help="Image folders: one or three channels "
                                                   "(default: as the first image).")] = None,
    mean: Annotated[str | None, typer.Option(help="Image folders: per-channel mean, e.g. 0.485,0.456,0.406 "
                                             "(default: computed).")] = None,
    std: Annotated[str | None, typer.Option(help="Image folders: per-channel std (default: computed).")] = None,
    skip_bad_images: Annotated[bool, typer.Option("--skip-bad-images", help="Image folders: skip unreadable images "
                                                  "(counted) instead of stopping.")] = False,
    crop_scale: Annotated[str | None, typer.Option(help="Image folders: training random-resized-crop area range "
                                                   "min,max (fractions of the image; default 0.08,1).")] = None,
    crop_ratio: Annotated[str | None, typer.Option(help="Image folders: training random-resized-crop aspect-ratio "
                                                   "range min,max (default 0.75,1.333).")] = None,
    no_flip: Annotated[bool, typer.Option("--no-flip", help="No random horizontal flips in training (digits, text, "
                                          "anything whose mirror image is another class).")] = False,
    workers: Annotated[int | None, typer.Option(help="Image folders: decoding threads (default min(4, CPUs)).")]
    = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    init: Annotated[str | None, typer.Option(help="Start from this trained full network (skips pre-training).")]
    = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from <out>.resume.pt of an interrupted run.")]
    = False,
    out: Annotated[str | None, typer.Option(help="Where to write the checkpoint (default model.pt).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing checkpoint at --out.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the steps each phase will run and a rough time "
                                          "estimate (from a few timed steps), then stop without training.")]
    = False,
) -> None:
    """Train nested sub-nets sharing one set of weights and write them to a checkpoint (model.pt)."""
    from rich.console import Console

    from slimrt.train.config import SearchConfig
    from slimrt.train.loops import make_progress
    from slimrt.train.trainer import run_training

    targets_frac, targets_ms = _latency_targets(latency_targets)
    overrides = {
        "arch": arch, "dataset": data, "data_dir": data_dir, "method": method, "pretrain_epochs": pretrain_epochs,
        "epochs": epochs, "subnets": subnets, "min_macs": min_macs, "macs_step": macs_step,
        "macs_targets": _fractions(macs_targets), "group_size": group_size, "min_units": min_units,
        "threshold": threshold,
        "finetune_always": True if finetune_always else None, "ranking": ranking,
        "reselect": False if no_reselect else None, "keep_full": True if keep_full else None,
        "distill": False if no_distill else None, "seed": seed,
        "batch_size": batch_size, "lr": lr, "finetune_lr": finetune_lr, "limit_train": limit_train,
        "val_size": val_size, "input_size": input_size, "grayscale": grayscale, "mean": _floats(mean, "--mean"),
        "std": _floats(std, "--std"), "skip_bad_images": True if skip_bad_images else None,
        "crop_scale": _floats(crop_scale, "--crop-scale"), "crop_ratio": _floats(crop_ratio, "--crop-ratio"),
        "flip": False if no_flip else None, "workers": workers,
        "noise_steps": noise_steps, "finetune_steps": finetune_steps, "calib_batches": calib_batches,
        "device": device, "init": init, "resume": True if resume else None, "out": out,
        "force": True if force else None, "cost": cost, "supernet_epochs": supernet_epochs,
        "usnet_min_width": usnet_min_width,
        "latency_table": latency_table, "latency_targets": targets_frac, "latency_targets_ms": targets_ms,
    }  # fmt: skip
    if config is not None:
        cfg = SearchConfig.from_toml(config, **overrides)
    else:
        cfg = SearchConfig.build({}, overrides, source="options")
    if dry_run:
        from slimrt.train.plan import plan_training

        plan = plan_training(cfg)
        typer.echo(plan.model_dump_json(indent=2) if json_out else "\n".join(plan.lines()))
        return
    cfg.check_out()  # before importing torch's training stack or reading data
    from slimrt.train import distributed

    is_main = os.environ.get("RANK", "0") in ("", "0")  # under torchrun only rank 0 shows progress and prints
    err = Console(stderr=True)
    with make_progress(console=err, disable=not is_main) as progress:
        try:
            result = run_training(cfg, progress=progress)
        finally:
            distributed.cleanup()
    if not is_main:
        return
    if json_out:
        typer.echo(result.model_dump_json(indent=2))
    else:
        _render(result, Console())
