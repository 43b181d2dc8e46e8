"""Standard-mode accuracy benchmark: one (method, seed) run per command, resumable, one result file per run.

    python benchmarks/accuracy.py --mode standard --method pretrain --seed 0     # shared pre-trained network
    python benchmarks/accuracy.py --mode standard --method usnet --seed 0        # pre-trains first if needed
    python benchmarks/accuracy.py --mode standard --method usnet-w8 --seed 0     # US-Nets trained down to 1/8 width
    python benchmarks/accuracy.py --mode standard --method progressive --seed 0
    python benchmarks/accuracy.py --mode standard --method independent --seed 0 --max-minutes 55   # twins
    python benchmarks/accuracy.py --mode standard --method independent-uniform --seed 0 --max-minutes 55
    python benchmarks/accuracy.py --mode standard --aggregate                    # table + plot from the run files
    python benchmarks/accuracy.py --mode standard --aggregate --stored-latency   # the same, measuring nothing
    python benchmarks/accuracy.py --mode standard --aggregate --export-cache DIR --export-only   # beside training
    python benchmarks/accuracy.py --mode standard --aggregate --export-cache DIR   # then a quiet window that measures
    python benchmarks/accuracy.py --mode standard --aggregate --export-cache DIR --latency-block 5 --latency-threads 1
        # steady calls on one thread, as the runtime serves a sub-net: its own series (aggregate-threads1-block5.*)

Protocol (issue 10): ResNet-20 on all 55,000 Fashion-MNIST training images (5,000 of the 60,000 carved out as the
validation split that drives every search decision), the 10,000-image test set for reported numbers only.

1. ``pretrain``: the full network trained for ``pretrain_epochs`` (cosine, warm-up), one per seed, written to
   ``<results>/pretrained-seed<k>.pt`` (a ``{"state_dict": ...}`` file that ``slimrt train --init`` reads), so every
   method of that seed starts from the same weights.
2. Every method then gets the same additional training compute: ``budget_epochs`` (6) epochs of US-Nets sandwich
   training on the 55,000 images, counted as forward + backward MACs (3 x forward MACs per trained image).
   US-Nets trains exactly that; progressive search spends part of it on the search (ranking, short fine-tunes)
   and the rest, rounded down to whole epochs, on the final joint fine-tune (so it never gets more than US-Nets).
   The independent controls (the progressive architectures' twins, and uniform networks at their MACs) train each
   network from scratch with the pre-training recipe instead, their compute recorded beside this budget; see
   ``benchmarks/accuracy_independent.py`` (resumable per network and epoch, ``--max-minutes``).
3. Each run goes through ``slimrt train``'s own code path (:func:`slimrt.train.trainer.run_training`), with its
   resume file under ``--work-dir``: an interrupted run continues where its last checkpoint left it. With
   ``--max-minutes M`` a command stops by itself after the last piece (epoch, search candidate, grid width) that
   fits in M minutes and exits 0; the same command continues, so each command fits a 60-minute slot on any machine.
4. A US-Nets run evaluates test accuracy at every width of a 1-channel grid (widest channel group, 49 widths from
   0.25 to 1.0; 57 from 0.125 for ``usnet-w8``), BN calibrated per width, so the aggregate can pick its best width at
   any measured latency.

The run file ``<results>/<method>-seed<k>.json`` holds the command, configuration, machine, git commit and, per
sub-net (largest first), ``name, widths, macs, params, val_accuracy, test_accuracy``; US-Nets adds ``grid``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "accuracy" / "standard-resnet20"
WORK = ROOT / "runs" / "accuracy-standard"

STANDARD = {
    "arch": "resnet20", "dataset": "fashion-mnist", "limit_train": None, "val_size": 5000, "pretrain_epochs": 12,
    "warmup_epochs": 1.0, "subnets": 6, "min_macs": 0.15, "macs_step": 0.05, "max_cut": 0.25, "noise_steps": 100,
    "finetune_steps": 150, "threshold": 2.0, "calib_batches": 20, "batch_size": 128, "eval_batch_size": 1000,
}  # fmt: skip
BUDGET_EPOCHS = 6
"""Training compute every method gets after pre-training, in epochs of US-Nets sandwich training."""
_LATENCY = {"cost": "latency", "latency_table": "latency-table-cpu.json", "latency_step": 0.05, "min_latency": 0.45}
VARIANTS: dict[str, dict[str, Any]] = {
    "progressive-latency": {**_LATENCY, "supernet_epochs": 2},
    # issue 11's ablations, each one factor away from progressive-latency (or from progressive), read at matched
    # measured latency by the aggregate: cost (macs vs latency) x supernet (0 vs 2 epochs), and the ranking
    "progressive-latency-nosupernet": {**_LATENCY, "supernet_epochs": 0},
    "progressive-supernet": {"supernet_epochs": 2},
    "progressive-latency-l1": {**_LATENCY, "supernet_epochs": 2, "ranking": "l1"},
    "progressive-latency-bn": {**_LATENCY, "supernet_epochs": 2, "ranking": "bn"},
    "progressive-latency-random": {**_LATENCY, "supernet_epochs": 2, "ranking": "random"},
    # the same search with the table refitted on whole networks, aligned layers scaled apart
    # (benchmarks/latency_table_fit.py -> latency-table-cpu-fitted.json)
    "progressive-latency-fitted": {**_LATENCY, "supernet_epochs": 2, "latency_table": "latency-table-cpu-fitted.json"},
    # the ranking ablation on the family the README recommends (MACs cost + supernet warm start): the same search
    # with the units ranked by l1 norm, by BN scale, or at random instead of by trainable noise
    "progressive-supernet-l1": {"supernet_epochs": 2, "ranking": "l1"},
    "progressive-supernet-bn": {"supernet_epochs": 2, "ranking": "bn"},
    "progressive-supernet-random": {"supernet_epochs": 2, "ranking": "random"},
    # the recommended family searched deeper, down to 10% of the MACs (issue 10 allows "at most 15%"): at batch 1 the
    # 15%-MACs sub-nets ran 0.37-0.53 ms against 1.01-1.05 for the full network, a 2.35x span (goal 2.5x)
    "progressive-supernet-min10": {"supernet_epochs": 2, "min_macs": 0.10},
    # the recommended family (MACs ranking and steps) with its final sub-nets placed by the latency table: evenly
    # over 100% -> 42% of the full network's predicted latency (the table predicts 42% at about 10% of the MACs for
    # uniform widths, and overestimated the searched 15%-MACs sub-nets by 1-8 points of the full latency)
    "progressive-supernet-lt": {"supernet_epochs": 2, "latency_table": "latency-table-cpu.json",
                                "latency_targets": [1.0, 0.88, 0.76, 0.64, 0.53, 0.42]},
    # the recommended family with every width a multiple of 8 channels (units of 8 in every group: min_units 2 makes
    # the 16-channel groups' unit 8 instead of 4). ONNX Runtime runs a convolution whose channel counts are multiples
    # of the SIMD block (8 here) in its blocked NCHWc layout and the others as plain convolutions: over the
    # aggregate's windows w32 (8/16/32 channels, 7.8M MACs) ran 0.47 ms and w28 (5.97M) 0.63 ms, and the searched
    # sub-nets, with 4- and 12-channel stage-1 layers, ran 0.99 ms at 81% of the MACs against 1.08 for the full network
    "progressive-supernet-a8": {"supernet_epochs": 2, "min_units": 2},
    # both of the above: multiples of 8 channels (a8 met four of the five goals over 3 seeds but spanned 2.10x: at
    # seeds 1 and 2 re-selection kept an 85-93%-MACs sub-net instead of the full network) with the final sub-nets
    # placed by the latency table as in -lt (which spanned 3.21x)
    "progressive-supernet-lt-a8": {"supernet_epochs": 2, "min_units": 2, "latency_table": "latency-table-cpu.json",
                                   "latency_targets": [1.0, 0.88, 0.76, 0.64, 0.53, 0.42]},
    # the recommended family searched down to 12% of the MACs, the full network always kept as the largest sub-net:
    # with each latency window scaled to a common speed it meets four goals over 3 seeds and spans 2.49x (goal 2.5x;
    # per seed 2.62 / 2.16 / 2.52x: at seed 1 its 15%-MACs sub-net runs 0.45 ms), and min10 spanned 2.80x at seed 0
    "progressive-supernet-min12": {"supernet_epochs": 2, "min_macs": 0.12, "keep_full": True},
    # between the two: progressive-supernet (15%) read +1.20 over the smaller half but spanned 2.34x over twenty-five
    # scaled windows; min12 spanned 2.65x but read +0.92 (seeds 1 and 2 below progressive-supernet at every sub-net)
    "progressive-supernet-min13": {"supernet_epochs": 2, "min_macs": 0.13, "keep_full": True},
}
"""Named variants of progressive (issue 11): SearchConfig fields over the standard ones; a ``latency_table`` is
read from the results folder (``latency-table-cpu.json``: ``slimrt latency-table --arch resnet20 --in-channels 1
--image-size 28``, measured with the other runs paused). ``progressive-latency`` removes about 5% of the full
network's *predicted* latency per step down to 45% of it (the table's smallest possible sub-net predicts 39%: a
fixed cost per call and per layer), after a 2-epoch non-uniform supernet warm start, all inside the same budget."""
USNET_VARIANTS: dict[str, dict[str, Any]] = {
    # US-Nets trained down to 1/8 width (8 of 64 channels) instead of 1/4: the issue-10 fairness rule (the trained
    # range reaches the smallest searched sub-net) for the families searched below 16 channels' latency or MACs
    # (progressive-supernet-lt's smallest sub-nets: 1.8-3.0M MACs, against 1.96M for the 1/4 width)
    "usnet-w8": {"usnet_min_width": 0.125},
}
"""Named variants of usnet: SearchConfig fields over the standard ones. The same 6 epochs (the same sandwich steps);
a narrower smallest width makes them cheaper (``usnet-w8``: 92% of the usnet budget's MACs, recorded in the run
file). The aggregate adds, for the seeds that have one, a comparison against the widths of usnet and the variant
together (the better at each latency and MACs: a stronger baseline than either run alone)."""
METHODS = ("pretrain", "progressive", "usnet", *USNET_VARIANTS, "independent", "independent-uniform", *VARIANTS)
USNET_GRID_CHANNELS = 64
"""The grid of uniform widths: c / 64 for c = 16..64 (1-channel steps of ResNet-20's widest group), from the trained
range's narrowest width (c = 8 for ``usnet-w8``)."""

log = logging.getLogger("bench.accuracy.standard")


# ------------------------------------------------------------------------------------------------------ helpers


def _commit_of(repo: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str | None:
    """The benchmark checkout's commit, and the commit of the checkout ``slimrt`` was really imported from when that
    is another one (an editable install pointing at another worktree would otherwise go unnoticed)."""
    import slimrt

    commit = _commit_of(ROOT)
    code = Path(slimrt.__file__).resolve().parents[1]
    if code != ROOT.resolve():
        return f"{commit} (slimrt imported from {code} at {_commit_of(code)})"
    return commit


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "platform": platform.platform(), "torch": str(torch.__version__),
            "python": platform.python_version()}  # fmt: skip


class DeadlineStop(Exception):
    """``--max-minutes``: the run stopped after a resumable piece; the same command continues from there."""


class PieceDeadline:
    """``--max-minutes`` for a run made of resumable pieces (pre-training and training epochs, search candidates,
    US-Nets grid widths): after each piece, stop unless one more fits, estimated by the longest piece of this command
    so far (pieces differ: a search candidate takes a minute, a fine-tuning epoch several). At least one piece runs
    per command, so every command makes progress."""

    def __init__(self, max_minutes: float | None) -> None:
        self.minutes = max_minutes
        self.end = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
        self.last = time.monotonic()
        self.longest = 0.0
        self.pieces = 0

    def lap(self) -> None:
        """A piece ended (its time counts in the estimate)."""
        now = time.monotonic()
        self.longest = max(self.longest, now - self.last)
        self.last = now
        self.pieces += 1

    def room(self) -> bool:
        """Whether one more piece, as long as the longest so far, fits (always before the command's first piece)."""
        return self.end is None or self.pieces == 0 or time.monotonic() + self.longest <= self.end

    def piece_done(self, what: str) -> None:
        """Call after ``what`` is saved; raises :class:`DeadlineStop` when the next piece would not fit."""
        self.lap()
        if not self.room():
            raise DeadlineStop(what)


def build_config(seed: int, overrides: dict[str, Any] | None = None, **fields: Any):
    from slimrt.train.config import SearchConfig

    base = {**STANDARD, "seed": seed, **fields}
    base.update(overrides or {})
    return SearchConfig.build(base, source="standard benchmark config")


def load_data(cfg):
    from slimrt.train.data import load_dataset

    return load_dataset(cfg.dataset, root=cfg.data_dir, val_size=cfg.val_size, limit_train=cfg.limit_train,
                        seed=cfg.seed)  # fmt: skip


def subnet_rows(specs) -> list[dict[str, Any]]:
    return [{"name": s.name, "widths": dict(s.widths), "macs": s.macs, "params": s.params,
             "val_accuracy": s.val_accuracy, "test_accuracy": s.test_accuracy} for s in specs]  # fmt: skip


# ------------------------------------------------------------------------------------------------- pre-training


def pretrained_path(results: Path, seed: int) -> Path:
    return results / f"pretrained-seed{seed}.pt"


def pretrain(seed: int, results: Path, work: Path, overrides: dict[str, Any], progress,
             deadline: PieceDeadline | None = None) -> dict[str, Any]:  # fmt: skip
    """The shared pre-trained full network of ``seed`` (trained, or read back when its file exists)."""
    import io

    import torch

    from slimrt.io import atomic_write_bytes
    from slimrt.train.config import SearchConfig
    from slimrt.train.loops import ComputeMeter, evaluate, fixed_sampler, make_optimizer, train_epochs
    from slimrt.train.trainer import build_net

    out = pretrained_path(results, seed)
    if out.exists():
        blob = torch.load(out, map_location="cpu", weights_only=True)
        info = {k: v for k, v in blob.items() if k != "state_dict"}
        if not out.with_suffix(".json").exists():  # the readable record beside the weights
            write_results(out.with_suffix(".json"), info)
        return info
    cfg = build_config(seed, overrides, method="progressive")
    data = load_data(cfg)
    net = build_net(cfg, data)
    meter = ComputeMeter()
    opt = make_optimizer(net, cfg.lr, cfg.momentum, cfg.weight_decay)
    resume = work / f"pretrain-seed{seed}.resume.pt"
    start, seconds = 0, 0.0
    if resume.exists():
        state = torch.load(resume, map_location="cpu", weights_only=True)
        saved = SearchConfig.build(state["config"], source=str(resume))  # fields added since: their defaults
        if saved != cfg:
            raise SystemExit(f"{resume} was written with other settings; delete it to start over")
        net.model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        meter.load_state_dict(state["meter"])
        start, seconds = int(state["epoch"]), float(state["seconds"])
        log.info("pretrain seed %d: resuming after epoch %d", seed, start)
    t0 = time.perf_counter()

    def save(payload: dict[str, Any], path: Path) -> None:
        buf = io.BytesIO()
        torch.save(payload, buf)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())

    def epoch_done(epoch: int, o) -> None:
        elapsed = seconds + time.perf_counter() - t0
        acc = evaluate(net, None, data.x_val, data.y_val, cfg.eval_batch_size)
        log.info("pretrain seed %d: epoch %d/%d, val %.2f%%, %.0f s", seed, epoch + 1, cfg.pretrain_epochs, acc,
                 elapsed)  # fmt: skip
        weights = {k: v.detach().cpu() for k, v in net.model.state_dict().items()}
        save({"config": cfg.model_dump(), "state_dict": weights, "optimizer": o.state_dict(),
              "meter": meter.state_dict(), "epoch": epoch + 1, "seconds": elapsed}, resume)  # fmt: skip
        if deadline is not None and epoch + 1 < cfg.pretrain_epochs:
            deadline.piece_done(f"pretrain epoch {epoch + 1}/{cfg.pretrain_epochs}")

    if start < cfg.pretrain_epochs:
        train_epochs(net, data, fixed_sampler([net.full_spec()]), cfg.pretrain_epochs, cfg, progress, meter,
                     lr=cfg.lr, warmup_epochs=cfg.warmup_epochs, phase="pretrain", optimizer=opt, start_epoch=start,
                     on_epoch_end=epoch_done)  # fmt: skip
    seconds += time.perf_counter() - t0
    test = evaluate(net, None, data.x_test, data.y_test, cfg.eval_batch_size)
    val = evaluate(net, None, data.x_val, data.y_val, cfg.eval_batch_size)
    info = {"seed": seed, "epochs": cfg.pretrain_epochs, "test_accuracy": test, "val_accuracy": val,
            "train_macs": meter.train_macs, "seconds": seconds, "config": cfg.model_dump(), "machine": machine(),
            "commit": git_commit(), "goal_test_accuracy_93": test >= 93.0}  # fmt: skip
    save({"state_dict": {k: v.detach().cpu() for k, v in net.model.state_dict().items()}, **info}, out)
    write_results(out.with_suffix(".json"), info)
    resume.unlink(missing_ok=True)
    log.info("pretrain seed %d: test %.2f%% after %d epochs (%.0f s) -> %s", seed, test, cfg.pretrain_epochs, seconds,
             out)  # fmt: skip
    return info


# ------------------------------------------------------------------------------------------------- method runs


def usnet_budget_macs(cfg, data) -> int:
    """Training MACs of ``BUDGET_EPOCHS`` epochs of US-Nets sandwich training (the very steps a US-Nets run takes)."""
    from slimrt.train.loops import sampled_train_macs, steps_per_epoch
    from slimrt.train.methods.usnet import usnet_sampler
    from slimrt.train.trainer import build_net

    net = build_net(cfg.updated(method="usnet"), data)
    sampler = usnet_sampler(net, cfg.seed, cfg.sampled_subnets)
    return sampled_train_macs(sampler, cfg.batch_size, BUDGET_EPOCHS * steps_per_epoch(data, cfg.batch_size))


def usnet_grid(net, min_width: float = 0.25) -> list:
    """Uniform sub-nets at c / USNET_GRID_CHANNELS for c from the trained range's narrowest width (16 for 0.25) to 64,
    widest first, named ``w<c>``."""
    lo = math.ceil(min_width * USNET_GRID_CHANNELS - 1e-9)
    return [net.uniform_spec(c / USNET_GRID_CHANNELS, f"w{c}") for c in range(USNET_GRID_CHANNELS, lo - 1, -1)]


def grid_cache_path(ckpt_path: Path) -> Path:
    """Where a US-Nets run keeps its evaluated grid widths until its run file is written."""
    return ckpt_path.with_name(ckpt_path.name + ".grid.json")


def usnet_grid_rows(net, cfg, data, ckpt_path: Path, progress, deadline: PieceDeadline | None
                    ) -> tuple[list[dict[str, Any]], float]:  # fmt: skip
    """Every US-Nets grid width BN-calibrated and evaluated, one width at a time, each kept in
    ``<checkpoint>.grid.json`` (fingerprinted with the checkpoint's bytes) so that a stopped run continues at the
    next width. Per-width calibration on the same batches gives what calibrating them all at once gives.

    Returns the rows (widest first) and the evaluation seconds over all commands."""
    import hashlib

    from slimrt.io import atomic_write_text
    from slimrt.train.loops import calibration_batches
    from slimrt.train.methods.base import evaluate_specs

    cache = grid_cache_path(ckpt_path)
    fingerprint = hashlib.sha256(ckpt_path.read_bytes()).hexdigest()
    done: dict[str, Any] = {}
    seconds = 0.0
    if cache.exists():
        old = json.loads(cache.read_text())
        if old.get("checkpoint_sha256") == fingerprint:
            done, seconds = old["rows"], float(old["seconds"])
        else:
            log.warning("%s belongs to another checkpoint; evaluating the grid again", cache)
    grid = usnet_grid(net, cfg.usnet_min_width)
    batches = calibration_batches(data, cfg.search_steps(len(data.y_train)).calib_batches, cfg.batch_size, cfg.seed)
    task = progress.add_task("US-Nets grid", total=len(grid), completed=len(done), info="") if progress else None
    for spec in grid:
        if spec.name in done:
            continue
        t0 = time.perf_counter()
        [row] = subnet_rows(evaluate_specs(net, [spec], data, cfg, batches=batches))
        seconds += time.perf_counter() - t0
        done[spec.name] = row
        atomic_write_text(cache, json.dumps({"checkpoint_sha256": fingerprint, "seconds": seconds, "rows": done}))
        if progress is not None:
            progress.update(task, advance=1, info=f"{spec.name} {row['test_accuracy']:.2f}%")
        if deadline is not None and len(done) < len(grid):
            deadline.piece_done(f"grid width {spec.name} ({len(done)}/{len(grid)})")
    if task is not None and progress is not None:
        progress.remove_task(task)
    return [done[s.name] for s in grid], seconds


def run_method(method: str, seed: int, results: Path, work: Path, overrides: dict[str, Any], command: str,
               progress, pretrained: dict[str, Any], force: bool = False,
               deadline: PieceDeadline | None = None) -> int:  # fmt: skip
    """One (method, seed) run through ``slimrt train``'s code path; writes ``<results>/<method>-seed<seed>.json``."""
    from slimrt.train.checkpoint import load_checkpoint
    from slimrt.train.trainer import run_training

    out_file = results / f"{method}-seed{seed}.json"
    if out_file.exists() and not force:
        log.info("%s exists (use --force to rerun)", out_file)
        return 0
    t0 = time.perf_counter()
    ckpt_path = work / f"{method}-seed{seed}.pt"
    usnet = method == "usnet" or method in USNET_VARIANTS
    fields: dict[str, Any] = {"method": "usnet" if usnet else "progressive" if method in VARIANTS else method,
                              "init": str(pretrained_path(results, seed)), "resume": True,
                              "out": str(ckpt_path)}  # fmt: skip
    base = build_config(seed, overrides, **fields)
    data = load_data(base)
    budget = usnet_budget_macs(base, data)
    if usnet:
        cfg = base.updated(epochs=BUDGET_EPOCHS, **USNET_VARIANTS.get(method, {}))
    elif method == "progressive":
        cfg = base.updated(budget_macs=budget)
    elif method in VARIANTS:
        fields = dict(VARIANTS[method])
        if "latency_table" in fields:
            table = results / fields["latency_table"]
            if not table.is_file():
                raise SystemExit(f"--method {method} needs the latency table {table} (slimrt latency-table)")
            fields["latency_table"] = str(table)
        cfg = base.updated(budget_macs=budget, method="progressive", **fields)
    else:
        trained = ("progressive", "usnet", *USNET_VARIANTS, *VARIANTS)
        raise SystemExit(f"--method {method}: not a trained method of the standard protocol "
                         f"({', '.join(trained)})")  # fmt: skip
    if not ckpt_path.exists():
        hook = None if deadline is None else (lambda event: deadline.piece_done(f"training checkpoint {event}"))
        res = run_training(cfg, progress, hook=hook)
        log.info("%s seed %d trained in %.0f s (this command)", method, seed, res.seconds)
    ckpt = load_checkpoint(ckpt_path)
    net = ckpt.dynamic_net()
    subnets = subnet_rows(ckpt.subnets)
    payload: dict[str, Any] = {
        "method": method, "seed": seed, "mode": "standard", "command": command, "commit": git_commit(),
        "machine": machine(), "arch": cfg.arch, "dataset": data.name, "data": data.describe(),
        "config": cfg.model_dump(), "pretrained": {k: v for k, v in pretrained.items() if k != "config"},
        "budget": {"rule": f"{BUDGET_EPOCHS} epochs of US-Nets sandwich training after pre-training, "
                           "3 x forward MACs per trained image; progressive also counts its ranking forwards",
                   "budget_macs": budget},
        "full_macs": net.macs(), "full_params": net.params(), "subnets": subnets,
        "compute": ckpt.extra.get("compute"), "timings": ckpt.extra.get("timings"), "report": ckpt.extra.get("report"),
    }  # fmt: skip
    spent = payload["compute"]["train_macs"] + payload["compute"].get("by_phase", {}).get("rank", 0)
    payload["budget"]["spent_macs"] = spent
    payload["budget"]["spent_fraction"] = spent / budget
    if usnet:
        payload["grid"], payload["grid_seconds"] = usnet_grid_rows(net, cfg, data, ckpt_path, progress, deadline)
        payload["width_range"] = list(ckpt.extra.get("report", {}).get("width_range") or [])
    payload["wall_seconds"] = time.perf_counter() - t0
    payload["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_results(out_file, payload)
    grid_cache_path(ckpt_path).unlink(missing_ok=True)
    log.info("wrote %s: %s", out_file, ", ".join(f"{r['name']} {r['macs'] / 1e6:.2f}M {r['test_accuracy']:.2f}%"
                                                 for r in subnets))  # fmt: skip
    return 0


# ---------------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None):
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--mode", default="standard", choices=["standard"])
    p.add_argument("--method", choices=METHODS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--aggregate", action="store_true", help="measure latency, write the table and plot from run files")
    p.add_argument("--fresh-latency", action="store_true",
                   help="with --aggregate: read only this window's latency, not the median over the earlier windows "
                        "stored in aggregate.json")  # fmt: skip
    p.add_argument("--stored-latency", action="store_true",
                   help="with --aggregate: measure nothing, read the latency windows stored in aggregate.json (for "
                        "new run files of architectures already measured, e.g. the independent controls; minutes "
                        "instead of a quiet 12-minute window)")  # fmt: skip
    p.add_argument("--export-cache", type=Path, default=None, metavar="DIR",
                   help="with --aggregate: keep the architectures' ONNX exports in DIR and reuse them (exporting "
                        "takes most of a window's 12 minutes; fill DIR beside training with --export-only, then the "
                        "quiet window only measures)")  # fmt: skip
    p.add_argument("--export-only", action="store_true",
                   help="with --aggregate --export-cache DIR: export every architecture into DIR and stop")
    p.add_argument("--latency-threads", type=int, default=None, metavar="N",
                   help="with --aggregate: measure latency with N ONNX Runtime intra-op threads instead of the cpu "
                        "profile's (its own series of windows and files: aggregate-threads<N>.json/.md/.png)")
    p.add_argument("--latency-block", type=int, default=1, metavar="B",
                   help="with --aggregate: call each architecture B times in a row per round and time all but the "
                        "first (steady calls, as a runtime serves one sub-net; default 1: every call right after "
                        "another architecture's); its own series of windows and files (aggregate-block<B>.*)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--results", type=Path, default=RESULTS, help=f"run files and pre-trained weights ({RESULTS})")
    p.add_argument("--work-dir", type=Path, default=WORK, help=f"resume files of unfinished runs ({WORK})")
    p.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST files")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a SearchConfig field (JSON value); the run is then not the standard protocol")
    p.add_argument("--force", action="store_true", help="rerun even when the run file exists")
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop after the resumable piece (epoch, search candidate, grid width; for independent "
                        "methods: epoch) when the next would not fit in M minutes: exit 0 without a run file, and "
                        "the same command continues (a 60-minute slot: --max-minutes 55)")  # fmt: skip
    args = p.parse_args(argv)
    if not args.aggregate and not args.method:
        p.error(f"give --method ({', '.join(METHODS)}) or --aggregate")
    if args.max_minutes is not None and args.aggregate:
        p.error("--max-minutes applies to --method runs, not --aggregate")
    if (args.fresh_latency or args.stored_latency) and not args.aggregate:
        p.error("--fresh-latency and --stored-latency apply to --aggregate")
    if (args.export_cache or args.export_only) and not args.aggregate:
        p.error("--export-cache and --export-only apply to --aggregate")
    if args.export_only and args.export_cache is None:
        p.error("--export-only needs --export-cache DIR (where the exports go)")
    if args.export_only and args.stored_latency:
        p.error("--export-only prepares a measurement and --stored-latency measures none: give one of them")
    if args.fresh_latency and args.stored_latency:
        p.error("--fresh-latency measures a new window and --stored-latency measures none: give one of them")
    if (args.latency_threads is not None or args.latency_block != 1) and not args.aggregate:
        p.error("--latency-threads and --latency-block apply to --aggregate")
    if args.latency_block < 1:
        p.error(f"--latency-block must be >= 1, got {args.latency_block}")
    if args.latency_threads is not None and args.latency_threads < 1:
        p.error(f"--latency-threads must be >= 1, got {args.latency_threads}")
    if args.max_minutes is not None and args.max_minutes < 0:
        p.error(f"--max-minutes must be >= 0, got {args.max_minutes}")
    return args


def parse_overrides(items: list[str], data_dir: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"data_dir": data_dir} if data_dir else {}
    for item in items:
        k, _, v = item.partition("=")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def setup_logging(log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(name)s %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in (logging.StreamHandler(sys.stderr), logging.FileHandler(log_file)):
        h.setFormatter(fmt)
        root.addHandler(h)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/accuracy.py " + " ".join(shlex.quote(a) for a in argv)
    what = f"{args.method}-seed{args.seed}"
    if args.aggregate:
        from accuracy_aggregate import output_stem

        what = output_stem(args.latency_threads, args.latency_block)
    setup_logging(args.work_dir / f"{what}.log")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from slimrt.train.loops import make_progress

    overrides = parse_overrides(args.set, args.data_dir)
    with make_progress() as progress:  # plain periodic lines when the output is a log file
        if args.aggregate:
            from accuracy_aggregate import aggregate

            return aggregate(args.results, command, fresh_latency=args.fresh_latency,
                             measure=not args.stored_latency, export_cache=args.export_cache,
                             export_only=args.export_only, threads=args.latency_threads,
                             block=args.latency_block)  # fmt: skip
        independent = args.method.startswith("independent")
        if independent:
            from accuracy_independent import progressive_run, run_independent

            progressive_run(args.results, args.seed)  # its architectures are needed: fail before any training
        deadline = PieceDeadline(args.max_minutes)
        try:
            info = pretrain(args.seed, args.results, args.work_dir, overrides, progress, deadline)
            if args.method == "pretrain":
                print(json.dumps({k: v for k, v in info.items() if k != "config"}, indent=2, default=str))
                return 0
            if independent:
                return run_independent(args.method, args.seed, args.results, args.work_dir, overrides, command,
                                       progress, info, deadline=deadline, force=args.force)  # fmt: skip
            return run_method(args.method, args.seed, args.results, args.work_dir, overrides, command, progress, info,
                              force=args.force, deadline=deadline)  # fmt: skip
        except DeadlineStop as stop:
            log.info("%s seed %d: stopped after %s to stay within --max-minutes %g; run the same command again to "
                     "continue", args.method, args.seed, stop, args.max_minutes)  # fmt: skip
            return 0


if __name__ == "__main__":
    sys.exit(main())
