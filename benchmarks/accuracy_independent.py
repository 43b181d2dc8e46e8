"""Standard-mode independent controls: the progressive sub-nets' twins and uniform networks at their MACs.

    python benchmarks/accuracy.py --mode standard --method independent --seed 0 --max-minutes 55
    python benchmarks/accuracy.py --mode standard --method independent-uniform --seed 0 --max-minutes 55

- ``independent``: every architecture of ``<results>/progressive-seed<k>.json`` (its per-group widths) trained alone
  from scratch: the progressive sub-nets' *twins*.
- ``independent-uniform``: for each progressive sub-net, the uniform-width network (every group at ``ceil(c / C x
  channels)``, ``c`` = 1..C at 1-channel steps of the widest group ``C``) whose MACs are nearest to it (ties: the
  smaller), trained alone from scratch: the architecture-only control. Two sub-nets matching one width share it.

Compute rule: each network gets the full network's pre-training recipe, ``pretrain_epochs`` epochs with the same
schedule (cosine, warm-up), learning rate, batch size and augmentation (what "independently trained" means in the
literature), through :func:`slimrt.train.methods.independent.train_twin_epochs`. Its training MACs (3 x its forward
MACs per trained image) are recorded per sub-net, beside the other methods' compute (pre-training + the US-Nets
budget); they are not capped by it. A network whose widths are the full network's is the pre-trained network itself
(trained from scratch with this very recipe), read from its record instead of trained again.

Resumable per sub-net and per epoch: an unfinished twin keeps ``<name>.resume.pt`` (weights, optimiser, compute,
epoch) and a finished one ``<name>.json`` under ``<work-dir>/<method>-seed<k>/``, both fingerprinted with the
settings (a mismatch is an error, never silently mixed). ``--max-minutes M`` stops after the epoch when the next one
would not fit in M minutes (estimated by the longest epoch of the command so far: :class:`PieceDeadline`; at least
one epoch per command) and exits 0 without a run file; the same command
continues. The run file ``<results>/<method>-seed<k>.json`` is written once every sub-net is done.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

from _common import write_results
from accuracy_standard import (
    DeadlineStop,
    PieceDeadline,
    build_config,
    git_commit,
    load_data,
    machine,
    usnet_budget_macs,
)

__all__ = ["METHODS", "RULE", "progressive_run", "uniform_match", "control_specs", "run_independent"]

log = logging.getLogger("bench.accuracy.independent")

METHODS = ("independent", "independent-uniform")
RULE = ("each sub-net trained alone from scratch with the full network's pre-training recipe (pretrain_epochs "
        "epochs, cosine schedule with warm-up, same lr, batch size and augmentation); its training MACs (3 x its "
        "forward MACs per trained image) are recorded, not capped; a full-width sub-net is the pre-trained network "
        "itself (same recipe)")  # fmt: skip
RECIPE_FIELDS = ("arch", "arch_kwargs", "dataset", "limit_train", "val_size", "pretrain_epochs", "batch_size", "lr",
                 "warmup_epochs", "weight_decay", "momentum", "augment", "seed")  # fmt: skip
"""Settings under which the pre-trained network is the full-width twin."""


# ----------------------------------------------------------------------------------------------- architectures


def progressive_run(results: Path, seed: int) -> dict[str, Any]:
    """The progressive run file of ``seed`` (its architectures are what the controls train)."""
    path = results / f"progressive-seed{seed}.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: the independent controls train the progressive sub-nets' architectures; "
                         f"run `python benchmarks/accuracy.py --mode standard --method progressive --seed {seed}` "
                         "first")  # fmt: skip
    try:
        run = json.loads(path.read_text())
        rows = run["subnets"]
        if not rows or not all(isinstance(r["widths"], dict) and "name" in r and "macs" in r for r in rows):
            raise ValueError("no sub-nets with name, widths and macs")
    except (ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"{path} is not a progressive run file: {e}") from None
    return run


def uniform_match(net, macs: int, name_prefix: str = "w"):
    """The uniform-width spec (1-channel steps of the widest group) whose MACs are nearest ``macs`` (ties: smaller)."""
    widest = max(g.channels for g in net.prunable_groups)
    specs = [net.uniform_spec(c / widest, f"{name_prefix}{c}") for c in range(1, widest + 1)]
    return min(specs, key=lambda s: (abs(s.macs - macs), s.macs))


def control_specs(method: str, net, prog: dict[str, Any]) -> list[tuple[Any, list[dict[str, Any]]]]:
    """``(spec, progressive rows it stands for)`` per network to train, largest first."""
    from slimrt.errors import SlimrtError

    out: dict[str, tuple[Any, list[dict[str, Any]]]] = {}
    for row in prog["subnets"]:
        if method == "independent":
            try:
                spec = net.spec(row["widths"], name=row["name"])
            except SlimrtError as e:
                raise SystemExit(f"progressive sub-net {row['name']}: {e}") from None
            if spec.macs != row["macs"]:
                raise SystemExit(f"progressive sub-net {row['name']} has {spec.macs} MACs here but its run file "
                                 f"says {row['macs']}: recorded for another architecture or input")  # fmt: skip
        else:
            spec = uniform_match(net, row["macs"])
        key = json.dumps(spec.widths, sort_keys=True)
        out.setdefault(key, (spec, []))[1].append(row)
    return sorted(out.values(), key=lambda t: -t[0].macs)


# ---------------------------------------------------------------------------------------------------- training


ADDED_FIELDS = ("usnet_min_width", "keep_full")
"""SearchConfig fields added after the first independent runs: left out of the fingerprint at their default, so that
those runs' resume and done files stay valid (any other value still changes it)."""


def _fingerprint(method: str, cfg, spec) -> str:
    config = cfg.model_dump()
    for k in ADDED_FIELDS:
        if config[k] == type(cfg).model_fields[k].default:
            del config[k]
    fp = {"method": method, "config": config, "name": spec.name, "widths": spec.widths}
    return hashlib.sha256(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _save(payload: dict[str, Any], path: Path) -> None:
    import torch

    from slimrt.io import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(payload, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def _from_pretrained(cfg, spec, net, pretrained: dict[str, Any]) -> dict[str, Any] | None:
    """The full-width twin's record taken from the pre-trained network (None unless it applies)."""
    recipe, ours = pretrained.get("config") or {}, cfg.model_dump()
    if spec.widths != net.full_spec().widths or any(recipe.get(k) != ours[k] for k in RECIPE_FIELDS):
        return None
    return {"val_accuracy": pretrained["val_accuracy"], "test_accuracy": pretrained["test_accuracy"],
            "train_macs": pretrained["train_macs"], "epochs": pretrained["epochs"], "seconds": pretrained["seconds"],
            "source": "pretrained", "machine": pretrained.get("machine") or machine()}  # fmt: skip


def train_or_load(method: str, cfg, data, net, spec, folder: Path, deadline: PieceDeadline, progress,
                  pretrained: dict[str, Any]) -> dict[str, Any] | None:  # fmt: skip
    """The finished record of ``spec``'s network: read back, taken from pre-training, or trained (resumably).

    Returns None when ``deadline`` stopped it between epochs (its resume file then holds the progress).
    """
    import torch

    from slimrt.train.loops import ComputeMeter
    from slimrt.train.methods.independent import evaluate_twin, train_twin_epochs

    fp = _fingerprint(method, cfg, spec)
    done, resume = folder / f"{spec.name}.json", folder / f"{spec.name}.resume.pt"
    if done.exists():
        rec = json.loads(done.read_text())
        if rec.get("fingerprint") != fp:
            raise SystemExit(f"{done} was written with other settings or widths; delete it to train it again")
        return rec
    rec = _from_pretrained(cfg, spec, net, pretrained)
    if rec is None:
        meter = ComputeMeter()
        start, seconds, state = 0, 0.0, None
        if resume.exists():
            state = torch.load(resume, map_location="cpu", weights_only=True)
            if state.get("fingerprint") != fp:
                raise SystemExit(f"{resume} was written with other settings or widths; delete it to start over")
            meter.load_state_dict(state["meter"])
            start, seconds = int(state["epoch"]), float(state["seconds"])
        if start < cfg.pretrain_epochs and not deadline.room():
            return None
        log.info("%s %s (%.2fM MACs): %s epoch %d of %d", method, spec.name, spec.macs / 1e6,
                 "resuming after" if start else "training from", start, cfg.pretrain_epochs)  # fmt: skip
        t0 = t_epoch = time.perf_counter()

        def epoch_end(epoch: int, sub, opt) -> None:
            nonlocal t_epoch
            now = time.perf_counter()
            _save({"fingerprint": fp, "model": {k: v.detach().cpu() for k, v in sub.model.state_dict().items()},
                   "optimizer": opt.state_dict(), "meter": meter.state_dict(), "epoch": epoch + 1,
                   "seconds": seconds + now - t0}, resume)  # fmt: skip
            log.info("%s %s: epoch %d/%d, %.0f s", method, spec.name, epoch + 1, cfg.pretrain_epochs, now - t_epoch)
            t_epoch = now
            if epoch + 1 < cfg.pretrain_epochs:
                deadline.piece_done(f"{spec.name} epoch {epoch + 1}")
            else:  # the last epoch: evaluate and record the network whatever the time
                deadline.lap()

        try:
            sub, _ = train_twin_epochs(cfg, data, net, spec, progress, meter, start_epoch=start,
                                       model_state=None if state is None else state["model"],
                                       optimizer_state=None if state is None else state["optimizer"],
                                       on_epoch_end=epoch_end)  # fmt: skip
        except DeadlineStop:
            return None
        train_seconds = seconds + time.perf_counter() - t0
        t1 = time.perf_counter()
        scored = evaluate_twin(sub, spec, data, cfg, meter)
        rec = {"val_accuracy": scored.val_accuracy, "test_accuracy": scored.test_accuracy,
               "train_macs": meter.train_macs, "eval_macs": meter.other_macs, "epochs": cfg.pretrain_epochs,
               "seconds": train_seconds, "eval_seconds": time.perf_counter() - t1, "source": "trained",
               "machine": machine()}  # fmt: skip
    rec.update({"fingerprint": fp, "name": spec.name, "widths": dict(spec.widths), "macs": spec.macs,
                "params": spec.params, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})  # fmt: skip
    write_results(done, rec)
    resume.unlink(missing_ok=True)
    log.info("%s %s: test %.2f%% (%s)", method, spec.name, rec["test_accuracy"], rec["source"])
    return rec


def run_independent(method: str, seed: int, results: Path, work: Path, overrides: dict[str, Any], command: str,
                    progress, pretrained: dict[str, Any], max_minutes: float | None = None,
                    force: bool = False, deadline: PieceDeadline | None = None) -> int:  # fmt: skip
    """One independent-control run (resumable); writes ``<results>/<method>-seed<seed>.json`` once all are done.
    Stops between epochs when the next would not fit in ``deadline`` (default: ``max_minutes`` from now)."""
    from slimrt.train.trainer import build_net

    if method not in METHODS:
        raise SystemExit(f"--method {method}: not an independent control ({', '.join(METHODS)})")
    out_file = results / f"{method}-seed{seed}.json"
    if out_file.exists() and not force:
        log.info("%s exists (use --force to rerun)", out_file)
        return 0
    deadline = deadline if deadline is not None else PieceDeadline(max_minutes)
    prog = progressive_run(results, seed)
    cfg = build_config(seed, overrides, method="independent")
    data = load_data(cfg)
    net = build_net(cfg, data)
    todo = control_specs(method, net, prog)
    folder = work / f"{method}-seed{seed}"
    records = []
    for spec, _rows in todo:
        rec = train_or_load(method, cfg, data, net, spec, folder, deadline, progress, pretrained)
        if rec is None:
            log.info("%s seed %d: %d of %d networks done, time is up (--max-minutes %s); run the same command again "
                     "to continue", method, seed, len(records), len(todo), deadline.minutes)  # fmt: skip
            return 0
        records.append(rec)
    subnets = [{"name": s.name, "widths": dict(s.widths), "macs": s.macs, "params": s.params,
                "val_accuracy": r["val_accuracy"], "test_accuracy": r["test_accuracy"],
                "twin_of": [p["name"] for p in rows], "twin_of_macs": [p["macs"] for p in rows],
                "train_macs": r["train_macs"], "epochs": r["epochs"], "seconds": r["seconds"], "source": r["source"]}
               for (s, rows), r in zip(todo, records, strict=True)]  # fmt: skip
    spent = sum(r["train_macs"] for r in subnets)
    budget = usnet_budget_macs(cfg, data)
    others = int(pretrained["train_macs"]) + budget
    payload: dict[str, Any] = {
        "method": method, "seed": seed, "mode": "standard", "command": command, "commit": git_commit(),
        "machine": machine(), "arch": cfg.arch, "dataset": data.name, "data": data.describe(),
        "config": cfg.model_dump(), "pretrained": {k: v for k, v in pretrained.items() if k != "config"},
        "progressive_run": {"file": f"progressive-seed{seed}.json", "commit": prog.get("commit"),
                            "subnets": [p["name"] for p in prog["subnets"]]},
        "budget": {"rule": RULE, "epochs_per_subnet": cfg.pretrain_epochs, "spent_macs": spent,
                   "per_subnet_train_macs": [r["train_macs"] for r in subnets],
                   "pretrain_macs": int(pretrained["train_macs"]), "usnet_budget_macs": budget,
                   "other_methods_macs": others, "spent_fraction_of_other_methods": spent / others},
        "full_macs": net.macs(), "full_params": net.params(), "subnets": subnets,
        "machines": sorted({r["machine"]["cpu"] for r in records}),
        "train_seconds": sum(r["seconds"] for r in records),  # per network, over every command that trained it
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }  # fmt: skip
    write_results(out_file, payload)
    log.info("wrote %s: %s", out_file, ", ".join(f"{r['name']} {r['macs'] / 1e6:.2f}M {r['test_accuracy']:.2f}%"
                                                 for r in subnets))  # fmt: skip
    return 0
