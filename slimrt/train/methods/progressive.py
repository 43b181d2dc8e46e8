"""Progressive sub-net search (after Yang, He, Cao, Fan 2020, "A Progressive Sub-Network Searching Framework for
Dynamic Inference"), on a pre-trained full network.

1. Every prunable channel group is cut into *units* of ``group_size`` channels (:func:`unit_size`; groups narrower
   than ``min_units * group_size`` get smaller units; when the width is not a multiple, the odd-sized unit is the
   group's tail and goes first, so kept widths stay multiples of the unit).
2. The units of the current candidate are ranked (:mod:`slimrt.train.ranking`, trainable noise by default) and
   **physically reordered within the candidate's kept prefix**, most important first. Positions beyond the prefix
   are untouched, so every earlier (larger) candidate keeps exactly its channel set and BN statistics.
3. The lowest-ranked tail units are removed until the MACs drop by ``macs_step`` of the full MACs, or by
   ``max_cut`` of the current MACs if that is less (:func:`step_target`; the last step stops at ``min_macs``): the
   next, nested, candidate. Its BN statistics are recalibrated and its validation
   accuracy measured.
4. When that accuracy falls more than ``threshold`` points below its predecessor's (:func:`needs_finetune`), the
   candidates so far are fine-tuned jointly for ``finetune_steps`` steps (full network + newest + sampled others,
   in-place distillation from the full network).
5. From all candidates the final K are re-selected (:func:`reselect`: Pareto over MACs and validation accuracy,
   spread evenly over the MACs range, or at the user's MACs targets), fine-tuned jointly for ``epochs`` epochs,
   BN-calibrated per sub-net and evaluated on validation and test data.

Because removal always takes a group's tail, every sub-net is a prefix of every group in the final channel order.

With ``cost = "latency"`` (and a latency table from ``slimrt latency-table``) the search measures everything in
*predicted milliseconds* instead of MACs (NetAdapt-style): each step removes about ``latency_step`` of the full
network's predicted latency (:func:`latency_step_target`), the noise ranking weighs units by the milliseconds their
removal saves, every unit's score is then divided by those milliseconds (:func:`per_ms`, so scores compare across
groups as accuracy impact per ms saved), and re-selection spreads the final K over the predicted-latency range (or
picks them at ``latency_targets``). ``cost = "macs"`` is unchanged, except that latency targets (with a latency
table) place its final sub-nets too: it still ranks and steps by MACs, goes on until the smallest target's predicted
latency (``min_macs`` does not apply then) and re-selects at the targets by predicted latency. That keeps the more
accurate MACs ranking (measured in the standard accuracy benchmark) while the family spans the latency range the
runtime trades.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from slimrt.errors import ConfigError
from slimrt.schema import SubnetSpec
from slimrt.selection import reselect, subnet_names
from slimrt.train.loops import (
    ComputeMeter,
    calibrate,
    calibration_batches,
    evaluate,
    make_optimizer,
    sampled_train_macs,
    sandwich_sampler,
    steps_per_epoch,
    train_epochs,
    train_steps,
)
from slimrt.train.methods.base import MethodContext, MethodReport, TrainingMethod, evaluate_specs, register_method
from slimrt.train.methods.steps import (
    group_units,
    latency_step_target,
    min_keep,
    needs_finetune,
    per_ms,
    step_target,
    unit_size,
)
from slimrt.train.ranking import RankContext, Unit, get_ranking

if TYPE_CHECKING:
    from rich.progress import Progress

    from slimrt.train.config import SearchConfig
    from slimrt.train.data import Dataset
    from slimrt.train.dynamic import DynamicNet

__all__ = [
    "CandidateRecord",
    "SearchReport",
    "SearchState",
    "unit_size",
    "min_keep",
    "group_units",
    "step_target",
    "latency_step_target",
    "per_ms",
    "needs_finetune",
    "next_candidate",
    "progressive_search",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------------ records


class CandidateRecord(BaseModel):
    """One candidate of the search (accuracies in percent)."""

    model_config = ConfigDict(extra="forbid")

    spec: SubnetSpec
    macs_fraction: float
    val_accuracy: float = Field(description="right after its creation (BN recalibrated, before any fine-tune)")
    finetuned: bool = False
    val_after_finetune: float | None = None
    final_val_accuracy: float | None = Field(None, description="re-measured with the weights at the end of search")
    removed_units: int = 0
    predicted_latency_ms: float | None = Field(None, description="from the latency table (when one is given)")
    version: int = Field(0, description="fine-tunes done before this candidate's last evaluation")


class SearchReport(MethodReport):
    """What the progressive search did: every candidate, the fine-tunes it needed, compute and time."""

    model_config = ConfigDict(extra="forbid")

    method: str = "progressive"
    ranking: str
    full_macs: int
    threshold: float
    finetune_always: bool
    reselect: bool
    candidates: list[CandidateRecord]
    finetunes: int
    selected: list[str] = Field(description="candidate names picked as the final sub-nets, largest first")
    final_names: list[str]
    compute: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    cost: str = "macs"
    supernet_epochs: int = 0
    full_predicted_ms: float | None = None
    predicted_latency_ms: dict[str, float] = Field(default_factory=dict, description="final sub-nets (when a latency "
                                                   "table is given)")
    search_steps: dict[str, Any] = Field(default_factory=dict, description="the step counts run (SearchSteps)")


@dataclass
class SearchState:
    """Resumable progress of the search (plain values only; the trainer stores it with the weights)."""

    stage: str = "candidates"  # candidates -> finetune -> done
    candidates: list[CandidateRecord] = field(default_factory=list)
    finetunes: int = 0
    version: int = 0
    selected: list[str] = field(default_factory=list)
    final_specs: list[SubnetSpec] = field(default_factory=list)
    finetune_epoch: int = 0
    final_epochs: int | None = None  # epochs of the final fine-tune when set by a MACs budget
    supernet_epoch: int = 0  # supernet warm-start epochs done
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "candidates": [c.model_dump(mode="json") for c in self.candidates],
            "finetunes": self.finetunes,
            "version": self.version,
            "selected": list(self.selected),
            "final_specs": [s.model_dump(mode="json") for s in self.final_specs],
            "finetune_epoch": self.finetune_epoch,
            "final_epochs": self.final_epochs,
            "supernet_epoch": self.supernet_epoch,
            "timings": dict(self.timings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchState:
        return cls(
            stage=str(d["stage"]),
            candidates=[CandidateRecord.model_validate(c) for c in d["candidates"]],
            finetunes=int(d["finetunes"]),
            version=int(d["version"]),
            selected=[str(s) for s in d["selected"]],
            final_specs=[SubnetSpec.model_validate(s) for s in d["final_specs"]],
            finetune_epoch=int(d["finetune_epoch"]),
            final_epochs=None if d.get("final_epochs") is None else int(d["final_epochs"]),
            supernet_epoch=int(d.get("supernet_epoch", 0)),
            timings={str(k): float(v) for k, v in d["timings"].items()},
        )

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds


# -------------------------------------------------------------------------------------------------- one step


def next_candidate(
    net: DynamicNet,
    spec: SubnetSpec,
    units: list[Unit],
    importance: torch.Tensor,
    *,
    target_macs: float,
    name: str,
    cfg: SearchConfig,
    cost: Callable[[dict[str, int]], float] | None = None,
) -> tuple[SubnetSpec, int]:
    """Reorder the ranked units within ``spec``'s prefix (most important first) and remove tail units of lowest
    importance until the MACs (or ``cost`` of the kept widths, e.g. predicted ms) fall to ``target_macs`` or below.

    Returns:
        The new candidate (nested in ``spec``) and the number of units removed (0: nothing could be removed).
    """
    if len(importance) != len(units):
        raise ValueError(f"{len(importance)} scores for {len(units)} units")
    widths = dict(net.widths(spec))
    by_group: dict[str, list[tuple[float, Unit]]] = {}
    for u, s in zip(units, importance.tolist(), strict=True):
        by_group.setdefault(u.group, []).append((float(s), u))
    order: dict[str, list[int]] = {}
    queues: dict[str, list[tuple[float, int]]] = {}  # tail first: (importance, size)
    for g, items in by_group.items():
        items.sort(key=lambda t: t[1].start)
        full_units = [t for t in items if t[1].size == items[0][1].size]
        partial = [t for t in items if t[1].size != items[0][1].size]
        ranked = sorted(full_units, key=lambda t: (-t[0], t[1].start)) + partial
        perm = [c for _, u in ranked for c in range(u.start, u.stop)]
        perm += list(range(widths[g], net.group(g).channels))
        if perm != list(range(len(perm))):
            order[g] = perm
        queues[g] = [(s, u.size) for s, u in reversed(ranked)]
    if order:
        net.reorder(order)
    floor = {g: min_keep(net.group(g).channels, unit_size(net.group(g).channels, cfg.group_size, cfg.min_units),
                         cfg.min_width) for g in queues}  # fmt: skip
    group_rank = {g.name: i for i, g in enumerate(net.prunable_groups)}
    macs = net.macs(spec) if cost is None else cost(dict(widths))
    removed = 0
    while macs > target_macs:
        options = [(q[0][0], group_rank[g], g) for g, q in queues.items() if q and widths[g] - q[0][1] >= floor[g]]
        if not options:
            break
        _, _, g = min(options)
        _, size = queues[g].pop(0)
        widths[g] -= size
        removed += 1
        if cost is None:
            macs = net.spec({k: v for k, v in widths.items() if k in group_rank}).macs
        else:
            macs = cost(dict(widths))
    new = net.spec({k: v for k, v in widths.items() if k in group_rank}, name=name)
    return new, removed


# -------------------------------------------------------------------------------------------------- the search


Checkpoint = Callable[[SearchState, "torch.optim.Optimizer | None"], None]


def _evaluate_candidate(net: DynamicNet, spec: SubnetSpec, data: Dataset, cfg: SearchConfig, calib: list,
                        meter: ComputeMeter | None) -> float:  # fmt: skip
    calibrate(net, [spec], calib, meter)
    return evaluate(net, spec, data.x_val, data.y_val, cfg.eval_batch_size, meter)


def latency_fractions(cfg: SearchConfig, full_ms: float) -> list[float] | None:
    """The final sub-nets' latency targets as fractions of the full network's predicted ``full_ms``: ``latency_targets``
    as given, or ``latency_targets_ms`` divided by ``full_ms``.

    Raises:
        ConfigError: a target in ms above the full network's predicted latency (no sub-net can be slower).
    """
    if cfg.latency_targets_ms is None:
        return cfg.latency_targets
    over = [t for t in cfg.latency_targets_ms if t > full_ms * (1 + 1e-6)]
    if over:
        raise ConfigError(f"latency targets {', '.join(f'{t:g} ms' for t in over)} are above the full network's "
                          f"predicted {full_ms:.3f} ms on the table's device; give targets up to {full_ms:.3f} ms "
                          "(or fractions with --latency-targets)")  # fmt: skip
    return [t / full_ms for t in cfg.latency_targets_ms]


def final_epochs_for_budget(specs: Sequence[SubnetSpec], data: Dataset, cfg: SearchConfig,
                            meter: ComputeMeter) -> int:  # fmt: skip
    """Whole epochs of the final joint fine-tune that fit in ``cfg.budget_macs`` minus what the search spent
    (training MACs plus ranking forwards), at least one. Rounded down: the search never gets more than its budget
    except for that one epoch."""
    assert cfg.budget_macs is not None
    spent = meter.train_macs + meter.by_phase.get("rank", 0)
    sampler = sandwich_sampler(specs, cfg.sampled_subnets, cfg.seed, phase="finetune")
    per_epoch = sampled_train_macs(sampler, cfg.batch_size, steps_per_epoch(data, cfg.batch_size))
    epochs = max(1, int((cfg.budget_macs - spent) // per_epoch))
    log.info("budget %.3g MACs, search spent %.3g: final fine-tune %d epochs of %.3g MACs", cfg.budget_macs, spent,
             epochs, per_epoch)  # fmt: skip
    return epochs


def progressive_search(
    net: DynamicNet,
    data: Dataset,
    cfg: SearchConfig,
    progress: Progress | None = None,
    meter: ComputeMeter | None = None,
    *,
    state: SearchState | None = None,
    optimizer_state: dict[str, Any] | None = None,
    checkpoint: Checkpoint | None = None,
    forward: torch.nn.Module | None = None,
    batch_transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[list[SubnetSpec], SearchReport]:
    """Search, re-select and jointly fine-tune ``cfg.subnets`` nested sub-nets of the (pre-trained) ``net``.

    Args:
        state: progress of an interrupted search to continue (``net`` must hold the weights saved with it).
        optimizer_state: optimiser state of the interrupted final fine-tuning, if it was under way.
        checkpoint: called with the state (and the fine-tuning optimiser) after every candidate, after the
            re-selection and after every fine-tuning epoch.
        forward: module called for training forwards (the DistributedDataParallel wrapper of ``net``).
        batch_transform: per-batch transform of the fine-tunes (sharding across ranks, see
            :mod:`slimrt.train.distributed`). Ranking, calibration and evaluation run on every rank unsharded
            and deterministically, so every rank takes the same search decisions.

    Returns:
        The final sub-nets, largest first, with validation and test accuracy, and the search report.
    """
    if len(data.y_val) == 0:
        raise ConfigError("progressive search needs a validation split (val_size > 0) to compare candidates")
    meter = meter if meter is not None else ComputeMeter()
    st = state if state is not None else SearchState()
    save = checkpoint or (lambda s, o: None)
    full_macs = net.macs()
    steps = cfg.search_steps(len(data.y_train))
    log.info("%s", steps.describe())
    calib = calibration_batches(data, steps.calib_batches, cfg.batch_size, cfg.seed)
    rank = get_ranking(cfg.ranking)
    # lat: predictions from the latency table (stored with every candidate; places the final sub-nets at latency
    # targets under either cost). pred: the same predictor when it is also the search's cost.
    lat = pred = None
    latency_targets, min_latency = None, cfg.min_latency
    if cfg.latency_table is not None:
        from slimrt.train.latency import LatencyPredictor, load_latency_table

        lat = LatencyPredictor(net, load_latency_table(cfg.latency_table))
        latency_targets = latency_fractions(cfg, lat.full_ms)
    if cfg.cost == "latency":
        assert lat is not None  # SearchConfig checks it
        pred = lat
        full_cost = pred.full_ms
        min_latency = min(cfg.min_latency, *(latency_targets or [1.0]))
        min_cost = min_latency * full_cost * (1 + 1e-9)
        n_steps = max(1, math.ceil((1 - min_latency) / cfg.latency_step - 1e-9))
    else:
        full_cost = float(full_macs)
        min_cost = cfg.min_macs * full_macs * (1 + 1e-9)
        n_steps = max(1, math.ceil((1 - cfg.min_macs) / cfg.macs_step - 1e-9))
    # MACs cost with latency targets: MACs steps until the smallest target's predicted latency, whatever min_macs says
    place_ms: float | None = None
    if pred is None and lat is not None and latency_targets is not None:
        place_ms = min(latency_targets) * lat.full_ms * (1 + 1e-9)

    def cost_of(spec: SubnetSpec) -> float:
        return spec.macs if pred is None else pred.ms(spec)

    def more_to_cut(spec: SubnetSpec) -> bool:
        if place_ms is not None and lat is not None:
            return lat.ms(spec) > place_ms
        return cost_of(spec) > min_cost

    def predicted(spec: SubnetSpec) -> float | None:
        return None if lat is None else lat.ms(spec)
    task = progress.add_task("search", total=n_steps + 1, completed=len(st.candidates), info="") if progress else None

    if st.stage == "candidates":
        if not st.candidates:
            if st.supernet_epoch < cfg.supernet_epochs:
                from slimrt.train.methods.supernet import supernet_warm_start

                t_sn = [time.perf_counter()]

                def supernet_epoch_done(epoch: int, o: torch.optim.Optimizer) -> None:
                    st.supernet_epoch = epoch + 1
                    st.add_time("supernet", time.perf_counter() - t_sn[0])
                    t_sn[0] = time.perf_counter()
                    save(st, o)

                supernet_warm_start(net, data, cfg, progress, meter, start_epoch=st.supernet_epoch,
                                    optimizer_state=optimizer_state if st.supernet_epoch > 0 else None,
                                    on_epoch_end=supernet_epoch_done, forward=forward,
                                    batch_transform=batch_transform)  # fmt: skip
            t0 = time.perf_counter()
            full = net.full_spec("c00")
            acc = _evaluate_candidate(net, full, data, cfg, calib, meter)
            st.candidates.append(CandidateRecord(spec=full.with_accuracy(val=acc), macs_fraction=1.0, val_accuracy=acc,
                                                 predicted_latency_ms=predicted(full)))  # fmt: skip
            st.add_time("evaluate", time.perf_counter() - t0)
            save(st, None)
            if progress is not None:
                progress.update(task, advance=1, info=f"c00 {acc:.2f}%")
        while more_to_cut(st.candidates[-1].spec):
            i = len(st.candidates)
            cur = st.candidates[-1].spec
            t0 = time.perf_counter()
            units = group_units(net, cur, cfg.group_size, cfg.min_units)
            ctx = RankContext(data=data, seed=cfg.seed, key=i, noise_steps=steps.noise_steps, noise_lr=cfg.noise_lr,
                              noise_reward=cfg.noise_reward, noise_init=cfg.noise_init,
                              batch_size=cfg.noise_batch_size, meter=meter, progress=progress)  # fmt: skip
            if pred is None:
                scores = rank(net, cur, units, ctx)
                target = step_target(cur.macs, full_macs, cfg, min_fraction=0.0 if place_ms is not None else None)
                new, removed = next_candidate(net, cur, units, scores, target_macs=target, name=f"c{i:02d}", cfg=cfg)
            else:
                saved = pred.unit_ms(cur, units)
                ctx.unit_cost = saved
                scores = per_ms(rank(net, cur, units, ctx), saved)
                target = latency_step_target(pred.ms(cur), full_cost, cfg, min_latency)
                new, removed = next_candidate(net, cur, units, scores, target_macs=target, name=f"c{i:02d}", cfg=cfg,
                                              cost=pred.ms)  # fmt: skip
            st.add_time("rank", time.perf_counter() - t0)
            if removed == 0:
                log.warning("search stopped at %.1f%% %s: no unit can be removed (min width reached)",
                            100 * cost_of(cur) / full_cost, "MACs" if pred is None else "predicted latency")
                break
            t0 = time.perf_counter()
            acc = _evaluate_candidate(net, new, data, cfg, calib, meter)
            st.add_time("evaluate", time.perf_counter() - t0)
            prev = st.candidates[-1]
            prev_acc = prev.val_after_finetune if prev.val_after_finetune is not None else prev.val_accuracy
            rec = CandidateRecord(spec=new.with_accuracy(val=acc), macs_fraction=new.macs / full_macs,
                                  val_accuracy=acc, removed_units=removed, version=st.version,
                                  predicted_latency_ms=predicted(new))  # fmt: skip
            if needs_finetune(prev_acc, acc, cfg.threshold, cfg.finetune_always, steps.finetune_steps):
                t0 = time.perf_counter()
                specs = [c.spec for c in st.candidates] + [new]
                sampler = sandwich_sampler(specs, cfg.sampled_subnets, cfg.seed, phase=f"step-finetune-{i}")
                train_steps(net, data, sampler, steps.finetune_steps, cfg, progress, meter, lr=cfg.step_finetune_lr,
                            phase=f"step-finetune-{i}", forward=forward, batch_transform=batch_transform)  # fmt: skip
                st.finetunes += 1
                st.version += 1
                after = _evaluate_candidate(net, new, data, cfg, calib, meter)
                rec = rec.model_copy(update={"finetuned": True, "val_after_finetune": after, "version": st.version})
                st.add_time("step_finetune", time.perf_counter() - t0)
                log.info("c%02d: %.2f%% -> fine-tuned %.2f%%", i, acc, after)
            st.candidates.append(rec)
            save(st, None)
            if progress is not None:
                shown = rec.val_after_finetune if rec.finetuned else acc
                # placed by latency, the chain's length is not known up front: keep one step ahead of it
                total = max(n_steps + 1, len(st.candidates) + 1) if place_ms is not None else n_steps + 1
                progress.update(task, advance=1, total=total,
                                info=f"c{i:02d} {100 * rec.macs_fraction:.0f}% MACs {shown:.2f}%"
                                + (" (fine-tuned)" if rec.finetuned else ""))  # fmt: skip

        # Re-measure every candidate with the final search weights, then re-select.
        t0 = time.perf_counter()
        for j, c in enumerate(st.candidates):
            if c.version == st.version and c.final_val_accuracy is None:
                acc = c.val_after_finetune if c.finetuned else c.val_accuracy
            else:
                acc = _evaluate_candidate(net, c.spec, data, cfg, calib, meter)
            st.candidates[j] = c.model_copy(update={"final_val_accuracy": acc})
        st.add_time("evaluate", time.perf_counter() - t0)
        accs = [float(c.final_val_accuracy) for c in st.candidates]
        if lat is not None and (pred is not None or place_ms is not None):  # picked by predicted latency
            ms = [lat.ms(c.spec) for c in st.candidates]
            picks = reselect(ms, accs, cfg.subnets, targets=latency_targets, full_macs=lat.full_ms,
                             pareto=cfg.reselect, keep_largest=cfg.keep_full)  # fmt: skip
        else:
            macs = [c.spec.macs for c in st.candidates]
            picks = reselect(macs, accs, cfg.subnets, targets=cfg.macs_targets, full_macs=full_macs,
                             pareto=cfg.reselect, keep_largest=cfg.keep_full)  # fmt: skip
        # Chain order: each candidate is nested in every earlier one. Predicted latency need not fall along the chain
        # (a measured table is not monotonic in width), so the order by cost that reselect returns may break nesting.
        chosen = [st.candidates[i].spec for i in sorted(picks)]
        names = subnet_names([s.macs for s in chosen], full_macs)
        st.selected = [s.name for s in chosen]
        st.final_specs = [net.spec(s.widths, name=n) for s, n in zip(chosen, names, strict=True)]
        st.stage = "finetune"
        st.finetune_epoch = 0
        if cfg.budget_macs is not None:
            st.final_epochs = final_epochs_for_budget(st.final_specs, data, cfg, meter)
        save(st, None)
    if task is not None and progress is not None:
        progress.remove_task(task)

    if st.stage == "finetune":
        t0 = time.perf_counter()
        opt = make_optimizer(net, cfg.finetune_lr, cfg.momentum, cfg.weight_decay)
        if optimizer_state is not None and st.finetune_epoch > 0:
            opt.load_state_dict(optimizer_state)
        sampler = sandwich_sampler(st.final_specs, cfg.sampled_subnets, cfg.seed, phase="finetune")

        def epoch_done(epoch: int, o: torch.optim.Optimizer) -> None:
            st.finetune_epoch = epoch + 1
            st.add_time("final_finetune", time.perf_counter() - t_epoch[0])
            t_epoch[0] = time.perf_counter()
            save(st, o)

        t_epoch = [t0]
        epochs = cfg.epochs if st.final_epochs is None else st.final_epochs
        if epochs > st.finetune_epoch:
            train_epochs(net, data, sampler, epochs, cfg, progress, meter, lr=cfg.finetune_lr, phase="finetune",
                         optimizer=opt, start_epoch=st.finetune_epoch, on_epoch_end=epoch_done, forward=forward,
                         batch_transform=batch_transform)  # fmt: skip
        st.stage = "done"

    t0 = time.perf_counter()
    keep = {s.name for s in st.final_specs}
    for name in list(net.bn_stats):
        if name not in keep:
            del net.bn_stats[name]
    final = evaluate_specs(net, st.final_specs, data, cfg, meter, progress, batches=calib)
    st.add_time("final_evaluate", time.perf_counter() - t0)
    for a, b in zip(final, final[1:], strict=False):
        if not b.nested_in(a):
            raise AssertionError(f"sub-net {b.name} is not nested in {a.name}")  # the construction guarantees it
    report = SearchReport(
        ranking=cfg.ranking, full_macs=full_macs, threshold=cfg.threshold, finetune_always=cfg.finetune_always,
        reselect=cfg.reselect, candidates=st.candidates, finetunes=st.finetunes, selected=st.selected,
        final_names=[s.name for s in final], compute=meter.state_dict(), timings=dict(st.timings), cost=cfg.cost,
        supernet_epochs=cfg.supernet_epochs, search_steps=steps.model_dump(),
        full_predicted_ms=None if lat is None else lat.full_ms,
        predicted_latency_ms={} if lat is None else {s.name: lat.ms(s) for s in final},
    )  # fmt: skip
    return final, report


@register_method
class Progressive(TrainingMethod):
    """``--method progressive``: :func:`progressive_search`, resumable after every candidate and fine-tuning epoch."""

    name = "progressive"

    def run(self, ctx: MethodContext) -> tuple[list[SubnetSpec], MethodReport]:
        resume = ctx.resume
        state = SearchState.from_dict(resume["search"]) if resume and resume.get("search") else None
        opt_state = resume.get("optimizer") if resume and resume["phase"] == "search" else None

        def checkpoint(st: SearchState, opt: torch.optim.Optimizer | None) -> None:
            if st.stage == "candidates" and not st.candidates:
                event = f"supernet-{st.supernet_epoch}"
            elif st.stage == "candidates":
                event = f"search-{len(st.candidates)}"
            else:
                event = f"{st.stage}-{st.finetune_epoch}"
            ctx.checkpoint({"search": st.to_dict(), "optimizer": opt.state_dict() if opt is not None else None}, event)

        return progressive_search(ctx.net, ctx.data, ctx.cfg, ctx.progress, ctx.meter, state=state,
                                  optimizer_state=opt_state, checkpoint=checkpoint, forward=ctx.ddp.forward,
                                  batch_transform=ctx.ddp.batch_transform)  # fmt: skip
