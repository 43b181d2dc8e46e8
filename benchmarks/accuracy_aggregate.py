"""Aggregate of the standard-mode accuracy runs: measured latency of every architecture, matched tables, plot.

    python benchmarks/accuracy.py --mode standard --aggregate

Reads every ``<method>-seed<k>.json`` run file in the results folder (runs made at different times and on different
machines add up), then measures on *this* machine, in one interleaved run, the latency of every architecture the runs
recorded (progressive sub-nets, every US-Nets grid width, the independent controls): each is extracted from a
ResNet-20 with its recorded per-group widths (latency depends on the widths, not on the weights), exported with
slimrt's ONNX exporter and timed with ``slimrt bench``'s protocol (ONNX Runtime CPU, the ``cpu`` device profile's
warm-up, rounds and duration bound, round-robin interleaving) at batch 1 and batch 32.

For each progressive sub-net of a seed (US-Nets: the grid widths of its ``usnet`` run; and, in a second comparison
over the seeds that also have a variant trained down to a narrower width such as ``usnet-w8``, the widths of both
runs, the variant's named ``usnet-w8:w10``):
- matched latency: the most accurate US-Nets grid width of the same seed whose batch-1 p50 is not larger;
- matched MACs: the US-Nets grid width whose MACs are nearest (both MACs reported);
- when the seed has an ``independent`` run: its twin (the same widths trained alone from scratch) and the gap to it;
- when the seed has an ``independent-uniform`` run: its uniform network with the nearest MACs, and the gap to it.
Gaps are averaged per sub-net rank over the seeds that have both runs (mean, sd, n; the independent columns over the
seeds that have those runs too). Writes ``aggregate.json``, ``aggregate.md`` and ``aggregate.png`` beside the run
files.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import random_unit_grid_widths, write_results
from accuracy_standard import USNET_VARIANTS, VARIANTS, cpu_model, git_commit, machine

log = logging.getLogger("bench.accuracy.aggregate")

BATCHES = (1, 32)

USNETS = ("usnet", *USNET_VARIANTS)
"""The US-Nets runs. The headline baseline of a seed is its ``usnet`` run; each variant (``usnet-w8``) adds a second
comparison whose baseline is the grid widths of ``usnet`` and the variant together (the better of the two at each
latency and MACs: a stronger baseline than either), over the seeds that have both."""


# ------------------------------------------------------------------------------------------------ pure matching


def arch_key(widths: dict[str, int]) -> str:
    return ",".join(f"{k}={widths[k]}" for k in sorted(widths))


def matched_latency(p_latency: float, grid: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The most accurate grid row whose ``b1_p50`` is not above ``p_latency`` (None when every width is slower)."""
    fits = [g for g in grid if g["b1_p50"] <= p_latency]
    return max(fits, key=lambda g: g["test_accuracy"]) if fits else None


def matched_macs(p_macs: int, grid: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The grid row whose MACs are nearest to ``p_macs`` (ties: the smaller one; equal MACs: the more accurate)."""
    return min(grid, key=lambda g: (abs(g["macs"] - p_macs), g["macs"], -g["test_accuracy"]))


def mean_sd(values: Sequence[float]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


def _brief(row: dict[str, Any] | None, lat: dict[str, dict[str, float]]) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"name": row["name"], "macs": row["macs"], "b1_p50": lat.get(arch_key(row["widths"]), {}).get("b1_p50"),
            "test_accuracy": row["test_accuracy"]}  # fmt: skip


def compare_seed(
    prog: dict[str, Any],
    usnet: dict[str, Any],
    lat: dict[str, dict[str, float]],
    twins: dict[str, Any] | None = None,
    uniform: dict[str, Any] | None = None,
    grid_lat: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Per progressive sub-net of one seed: latency, accuracy, US-Nets at matched latency and at matched MACs, and
    (when the seed has those runs) its independently trained twin and the uniform independent network at its MACs.
    ``grid_lat``: the US-Nets widths' latencies when they were measured apart from the family's (default ``lat``)."""
    grid = [{**g, **(grid_lat or lat)[arch_key(g["widths"])]} for g in usnet["grid"]]
    twin_by_arch = {arch_key(t["widths"]): t for t in twins["subnets"]} if twins else {}
    rows = []
    p_lat = [lat[arch_key(p["widths"])]["b1_p50"] for p in prog["subnets"]]
    mid = min(p_lat) + (max(p_lat) - min(p_lat)) / 2
    for rank, (p, pl) in enumerate(zip(prog["subnets"], p_lat, strict=True)):
        ml = matched_latency(pl, grid)
        mm = matched_macs(p["macs"], grid)
        rows.append({
            "rank": rank, "name": p["name"], "macs": p["macs"], "test_accuracy": p["test_accuracy"],
            **{k: v for k, v in lat[arch_key(p["widths"])].items()}, "smaller_half": pl <= mid,
            "usnet_at_latency": None if ml is None else {k: ml[k] for k in ("name", "macs", "b1_p50", "test_accuracy")},
            "gap_at_latency": None if ml is None else p["test_accuracy"] - ml["test_accuracy"],
            "usnet_at_macs": {k: mm[k] for k in ("name", "macs", "b1_p50", "test_accuracy")},
            "gap_at_macs": p["test_accuracy"] - mm["test_accuracy"],
        })  # fmt: skip
        tw = twin_by_arch.get(arch_key(p["widths"]))
        um = matched_macs(p["macs"], uniform["subnets"]) if uniform else None
        rows[-1].update({
            "twin": _brief(tw, lat), "gap_to_twin": None if tw is None else p["test_accuracy"] - tw["test_accuracy"],
            "uniform_at_macs": _brief(um, lat),
            "gap_to_uniform_at_macs": None if um is None else p["test_accuracy"] - um["test_accuracy"],
        })  # fmt: skip
    return rows


def summarize(per_seed: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Mean/sd per sub-net rank over seeds, and the issue's goals read from the means."""
    ranks = sorted({r["rank"] for rows in per_seed.values() for r in rows})
    table = []
    for k in ranks:
        rows = [r for rows in per_seed.values() for r in rows if r["rank"] == k]
        table.append({
            "rank": k, "seeds": len(rows), "macs": mean_sd([r["macs"] for r in rows]),
            "b1_p50": mean_sd([r["b1_p50"] for r in rows]),
            "progressive": mean_sd([r["test_accuracy"] for r in rows]),
            "usnet_at_latency": mean_sd([r["usnet_at_latency"]["test_accuracy"] for r in rows
                                         if r["usnet_at_latency"]]),
            "gap_at_latency": mean_sd([r["gap_at_latency"] for r in rows]),
            "usnet_at_macs": mean_sd([r["usnet_at_macs"]["test_accuracy"] for r in rows]),
            "gap_at_macs": mean_sd([r["gap_at_macs"] for r in rows]),
            "smaller_half": sum(r["smaller_half"] for r in rows) * 2 > len(rows),
            "twin": mean_sd([r["twin"]["test_accuracy"] for r in rows if r.get("twin")]),
            "gap_to_twin": mean_sd([r.get("gap_to_twin") for r in rows]),
            "uniform_at_macs": mean_sd([r["uniform_at_macs"]["test_accuracy"] for r in rows
                                        if r.get("uniform_at_macs")]),
            "gap_to_uniform_at_macs": mean_sd([r.get("gap_to_uniform_at_macs") for r in rows]),
        })  # fmt: skip
    spans = [max(r["b1_p50"] for r in rows) / min(r["b1_p50"] for r in rows) for rows in per_seed.values() if rows]
    lat_gaps = [t["gap_at_latency"]["mean"] for t in table if t["gap_at_latency"]["mean"] is not None]
    small = [t["gap_at_latency"]["mean"] for t in table
             if t["smaller_half"] and t["gap_at_latency"]["mean"] is not None]
    macs_gaps = [t["gap_at_macs"]["mean"] for t in table]
    twin_gaps = [t["gap_to_twin"]["mean"] for t in table if t["gap_to_twin"]["mean"] is not None]
    seeds = len(per_seed)
    goals = {
        "seeds": seeds,
        "mean_gap_at_latency_smaller_half": statistics.fmean(small) if small else None,
        "min_gap_at_latency": min(lat_gaps) if lat_gaps else None,
        "mean_gap_at_macs": statistics.fmean(macs_gaps) if macs_gaps else None,
        "goal_plus1_smaller_half": (statistics.fmean(small) >= 1.0) if small else None,
        "goal_never_below_minus_0.3": (min(lat_gaps) >= -0.3) if lat_gaps else None,
        "goal_macs_nonnegative": (statistics.fmean(macs_gaps) >= 0) if macs_gaps else None,
        "goal_read_over_3_seeds": seeds >= 3,
        "min_gap_to_twin": min(twin_gaps) if twin_gaps else None,
        "goal_within_0.5_of_twin": (min(twin_gaps) >= -0.5) if twin_gaps else None,
        "twin_seeds": max((t["gap_to_twin"]["n"] for t in table), default=0),
        "b1_p50_span": mean_sd(spans),
        "goal_span_2.5x": (statistics.fmean(spans) >= 2.5) if spans else None,
        "gap_at_latency_smallest": table[-1]["gap_at_latency"]["mean"] if table else None,
        "goal_smallest_plus1": (table[-1]["gap_at_latency"]["mean"] >= 1.0)
        if table and table[-1]["gap_at_latency"]["mean"] is not None else None,
    }
    return {"per_rank": table, "goals": goals}


# -------------------------------------------------------------------------------------------------- measurement


def export_architectures(archs: dict[str, dict[str, int]], arch: str, arch_kwargs: dict[str, Any],
                         input_shape: tuple[int, ...], folder: Path) -> dict[str, Path]:  # fmt: skip
    """Export every architecture (dynamic batch, as deployed) into ``folder``, one file per architecture named by a
    hash of the network, its widths, the torch and onnx versions and the exporter's code; files already there are
    reused, so a cache folder can be filled beside training and the quiet window only measures
    (``--export-cache``). Each file is written to a temporary name and renamed, so an interrupted export leaves no
    partial file."""
    import onnx
    import torch

    import slimrt.exporters.onnx as exporter
    from slimrt.exporters.onnx import export_module
    from slimrt.models import create_model
    from slimrt.train.dynamic import DynamicNet

    folder.mkdir(parents=True, exist_ok=True)
    code = hashlib.sha256(Path(exporter.__file__).read_bytes()).hexdigest()  # an exporter change: new files
    base = json.dumps([arch, arch_kwargs, list(input_shape), torch.__version__, onnx.__version__, code],
                      sort_keys=True)  # fmt: skip
    paths = {k: folder / f"{hashlib.sha256((base + k).encode()).hexdigest()[:20]}.onnx" for k in archs}
    todo = [k for k in archs if not paths[k].is_file()]
    if todo:
        torch.manual_seed(0)
        net = DynamicNet(create_model(arch, **arch_kwargs), torch.zeros(1, *input_shape)).eval()
        for i, key in enumerate(todo):
            sub = net.extract(net.spec(archs[key], name=f"a{i}")).eval()
            model = export_module(sub, torch.zeros(1, *input_shape), dynamic_batch=True)
            fd, part = tempfile.mkstemp(suffix=".part", dir=folder)  # unique: two exporters never share it
            os.close(fd)
            onnx.save(model, part)
            os.replace(part, paths[key])
            if (i + 1) % 10 == 0 or i + 1 == len(todo):
                log.info("exported %d of %d architectures", i + 1, len(todo))
    log.info("%d architectures: %d exported, %d reused from %s", len(archs), len(todo), len(archs) - len(todo),
             folder)  # fmt: skip
    return paths


def measure_architectures(
    archs: dict[str, dict[str, int]], arch: str, arch_kwargs: dict[str, Any], input_shape: tuple[int, ...],
    export_cache: Path | None = None, threads: int | None = None, block: int = 1,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Batch-1 and batch-32 p50/p95 (ms) of every architecture, one interleaved run per batch size (exports reused
    from ``export_cache`` when given, see :func:`export_architectures`), with ``threads`` intra-op threads (default:
    the ``cpu`` device profile's). ``block`` > 1: each architecture is called that many times in a row per round,
    its first call untimed (:func:`slimrt.runtime.measure.measure_latency`), over ``ceil(runs / block)`` rounds, so a
    window makes as many calls as with ``block`` 1."""
    import numpy as np

    from slimrt.backends import RunnerOptions, create_runner
    from slimrt.bench import load_device_profile
    from slimrt.exporters.onnx import INPUT_NAME, OUTPUT_NAME
    from slimrt.runtime.measure import measure_latency

    profile = load_device_profile("cpu")
    threads = profile.threads if threads is None else threads
    out: dict[str, dict[str, float]] = {k: {} for k in archs}
    with tempfile.TemporaryDirectory(prefix="slimrt-latency-") as tmp:
        paths = export_architectures(archs, arch, arch_kwargs, input_shape, export_cache or Path(tmp))
        log.info("measuring %d architectures", len(paths))
        runners = {}
        try:
            for key, path in paths.items():
                opts = RunnerOptions(device="cpu", threads=threads, input_name=INPUT_NAME,
                                     output_name=OUTPUT_NAME)  # fmt: skip
                runners[key] = create_runner("onnxruntime", path, opts)
                runners[key].load()
            for b in BATCHES:
                x = np.random.default_rng(0).standard_normal((b, *input_shape)).astype(np.float32)
                t0 = time.perf_counter()
                lat = measure_latency(runners, x, warmup=profile.warmup, runs=-(-profile.runs // block),
                                      duration_s=profile.duration_s * (4 if b > 1 else 2), block=block)  # fmt: skip
                log.info("batch %d: %d architectures in %.0f s", b, len(runners), time.perf_counter() - t0)
                for key, s in lat.items():
                    out[key][f"b{b}_p50"] = s.p50_ms
                    out[key][f"b{b}_p95"] = s.p95_ms
                    out[key][f"b{b}_runs"] = s.runs
        finally:
            for r in runners.values():
                r.close()
    protocol = {"backend": "onnxruntime", "providers": ["CPUExecutionProvider"], "threads": threads,
                "warmup": profile.warmup, "runs": profile.runs, "batches": list(BATCHES),
                "interleaved": "round-robin over every architecture, rotating order" + block_words(block)}  # fmt: skip
    if block > 1:
        protocol["block"] = block
    return out, protocol


def block_words(block: int) -> str:
    """How a series with ``block`` calls in a row is described (empty for the standard one call per round)."""
    return "" if block == 1 else f", {block} calls in a row per architecture (the first untimed)"


# ------------------------------------------------------------------------------------------------------ output


def _fmt(ms: dict[str, Any], digits: int = 2) -> str:
    if ms["mean"] is None:
        return "-"
    return f"{ms['mean']:+.{digits}f} ± {ms['sd']:.{digits}f}" if ms.get("signed") else \
        f"{ms['mean']:.{digits}f} ± {ms['sd']:.{digits}f}"


def markdown(summary: dict[str, Any]) -> str:
    """The per-rank table; the independent columns appear when some seed has those runs (``(n)``: their seeds)."""
    ranks = summary["per_rank"]
    twins = any(t.get("gap_to_twin", {}).get("n") for t in ranks)
    uniform = any(t.get("gap_to_uniform_at_macs", {}).get("n") for t in ranks)
    head = ["rank", "seeds", "MACs (M)", "b1 p50 ms", "progressive %", "US-Nets @ latency %", "gap @ latency",
            "US-Nets @ MACs %", "gap @ MACs"]  # fmt: skip
    head += ["twin % (n)", "gap to twin"] if twins else []
    head += ["uniform indep. @ MACs % (n)", "gap to uniform indep."] if uniform else []
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for t in ranks:
        macs = t["macs"]["mean"] / 1e6
        cells = [str(t["rank"] + 1), str(t["seeds"]), f"{macs:.2f}", _fmt(t["b1_p50"], 3), _fmt(t["progressive"]),
                 _fmt(t["usnet_at_latency"]), _fmt({**t["gap_at_latency"], "signed": True}),
                 _fmt(t["usnet_at_macs"]), _fmt({**t["gap_at_macs"], "signed": True})]  # fmt: skip
        for shown, acc, gap in ((twins, "twin", "gap_to_twin"), (uniform, "uniform_at_macs", "gap_to_uniform_at_macs")):
            if shown:
                cells += [f"{_fmt(t[acc])} ({t[acc]['n']})", _fmt({**t[gap], "signed": True})]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _num(v: float | None, spec: str = "+.2f") -> str:
    """A gap (signed, 2 decimals by default) or ``-`` when there is none."""
    return "-" if v is None else format(v, spec)


def baseline_note(res: dict[str, Any]) -> str:
    """`` (baseline: usnet + usnet-w8, seeds 0, 1)`` when the US-Nets baseline is more than the ``usnet`` run."""
    runs = res.get("usnet_runs", {})
    methods = sorted({m for r in runs.values() for m in r}, key=USNETS.index)
    if methods in ([], ["usnet"]):
        return ""
    return f" (baseline: {' + '.join(methods)}, the better at each point; seeds {', '.join(map(str, runs))})"


def goals_line(g: dict[str, Any]) -> str:
    """The goals of one comparison in a line (smaller half, worst rank, MACs, smallest, span)."""
    f = _num
    return (f"Goals over {g['seeds']} seed(s): smaller half @ latency {f(g['mean_gap_at_latency_smaller_half'])}, "
            f"worst rank {f(g['min_gap_at_latency'])}, @ MACs {f(g['mean_gap_at_macs'])}, smallest @ latency "
            f"{f(g['gap_at_latency_smallest'])}, b1 span {g['b1_p50_span']['mean']:.2f}x.")  # fmt: skip


def plot(path: Path, runs: dict[str, dict[int, dict[str, Any]]], lat: dict[str, dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"progressive": "tab:blue", "usnet": "tab:orange", "independent": "tab:green",
              "independent-uniform": "tab:red"}  # fmt: skip
    # single-seed ablations crowd the plot (they are in the ablation table): searched families with the most seeds
    searched = {m: len(v) for m, v in runs.items() if m in SEARCHED}
    most = max(searched.values(), default=0)
    shown = {m: v for m, v in runs.items() if m not in searched or searched[m] == most}
    spare = iter(c for c in ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
                 if c not in colors.values())  # fmt: skip
    for method in shown:
        if method not in colors:
            colors[method] = next(spare, "black")
    for method, seeds in shown.items():
        for k, (_seed, run) in enumerate(sorted(seeds.items())):
            rows = run.get("grid") or run["subnets"]
            xs = [lat[arch_key(r["widths"])]["b1_p50"] for r in rows]
            ms = [r["macs"] / 1e6 for r in rows]
            ys = [r["test_accuracy"] for r in rows]
            label = method if k == 0 else None
            if method in USNETS:  # latency is not monotonic in width: the grid as points, and the run's best
                # width at or under each latency (what matched latency compares with) as a step line
                axes[0].plot(xs, ys, ".", color=colors.get(method), alpha=0.5, markersize=4)
                order = sorted(range(len(xs)), key=lambda i: xs[i])
                best = list(itertools.accumulate((ys[i] for i in order), max))
                axes[0].step([xs[i] for i in order], best, where="post", color=colors.get(method), alpha=0.8,
                             label=None if label is None else f"{method} (best width at or under)")  # fmt: skip
                axes[1].plot(ms, ys, "-", color=colors.get(method), alpha=0.8, label=label)
                continue
            axes[0].plot(xs, ys, "o-", color=colors.get(method), alpha=0.8, label=label, markersize=4)
            axes[1].plot(ms, ys, "o-", color=colors.get(method), alpha=0.8, label=label, markersize=4)
    axes[0].set_xlabel(f"batch-1 p50 latency (ms), {cpu_model()}")
    axes[1].set_xlabel("MACs (M)")
    for ax in axes:
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("ResNet-20 / Fashion-MNIST, standard mode (one line per seed)")
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=150, bbox_inches="tight")
    os.replace(tmp, path)
    plt.close(fig)


def usnet_baseline(runs: dict[str, dict[int, dict[str, Any]]], seed: int,
                   methods: Sequence[str] = ("usnet",)) -> dict[str, Any] | None:  # fmt: skip
    """The US-Nets baseline of ``seed`` made of the US-Nets runs ``methods``: ``grid`` (every evaluated width of each,
    a variant's widths named ``<variant>:<width>``) and ``runs``; None unless the seed has all of them."""
    if any(seed not in runs.get(m, {}) for m in methods):
        return None
    parts = [(m, runs[m][seed]) for m in methods]
    grid = [{**g, "name": g["name"] if m == "usnet" else f"{m}:{g['name']}"} for m, run in parts for g in run["grid"]]
    return {"grid": grid, "runs": [m for m, _ in parts]}


SEARCHED = ("progressive", *VARIANTS)
"""Searched families, each compared with US-Nets of the same seed (the twins are the ``progressive`` family's)."""


def placed_by_latency(run: dict[str, Any]) -> bool:
    """Whether the run's final sub-nets were picked by predicted latency (cost latency, or latency targets)."""
    cfg = run.get("config", {})
    return run["report"].get("cost") == "latency" or bool(cfg.get("latency_targets") or cfg.get("latency_targets_ms"))


def placement(run: dict[str, Any]) -> str:
    """How the final sub-nets were placed, in words: spread over MACs or predicted latency down to the smallest
    sub-net the search went to, or at given targets."""
    cfg = run.get("config", {})
    if cfg.get("latency_targets"):
        return "predicted latency " + "/".join(f"{100 * t:.0f}" for t in cfg["latency_targets"]) + "%"
    if cfg.get("latency_targets_ms"):
        return "predicted latency " + "/".join(f"{t:g}" for t in cfg["latency_targets_ms"]) + " ms"
    if cfg.get("macs_targets"):
        return "MACs " + "/".join(f"{100 * t:.0f}" for t in cfg["macs_targets"]) + "%"
    if run["report"].get("cost") == "latency":
        return f"spread over predicted latency, to {100 * cfg.get('min_latency', 0):.0f}%"
    return f"spread over MACs, to {100 * cfg.get('min_macs', 0):.0f}%"


def search_mechanics(run: dict[str, Any]) -> dict[str, Any]:
    """What one progressive run's threshold and re-selection did, read from its search report: the steps that
    fine-tuned, and which final picks differ from ``k`` candidates evenly spaced along the chain (what the search
    would have kept without re-selection), with how many of those even picks a re-selection pick dominates (at
    most the same cost, at least the same validation accuracy on the final search weights, one of them strictly)."""
    from slimrt.selection import reselect

    rep = run["report"]
    cands = rep["candidates"]
    latency = placed_by_latency(run)
    cost = [c["predicted_latency_ms"] if latency else c["spec"]["macs"] for c in cands]
    acc = [c["final_val_accuracy"] for c in cands]
    index = {c["spec"]["name"]: i for i, c in enumerate(cands)}
    picked = sorted(index[n] for n in rep["selected"])
    even = sorted(reselect(cost, acc, len(picked), pareto=False))
    differ = [i for i in even if i not in picked]

    def dominates(j: int, i: int) -> bool:
        return cost[j] <= cost[i] and acc[j] >= acc[i] and (cost[j], acc[j]) != (cost[i], acc[i])

    dominated = [i for i in differ if any(dominates(j, i) for j in picked)]
    return {"cost": rep.get("cost", "macs"), "ranking": rep["ranking"], "placement": placement(run),
            "supernet_epochs": rep.get("supernet_epochs", 0), "steps": len(cands) - 1, "finetunes": rep["finetunes"],
            "picked": [cands[i]["spec"]["name"] for i in picked],
            "even": [cands[i]["spec"]["name"] for i in even], "picks_differ": len(differ),
            "even_picks_dominated": len(dominated),
            "budget_spent": run.get("budget", {}).get("spent_fraction")}  # fmt: skip


def ablation(runs: dict[str, dict[int, dict[str, Any]]], families: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per searched family: its factors, the goals read at matched measured latency, and what the
    threshold and re-selection did (summed over its seeds)."""
    rows = []
    for fam, res in families.items():
        mech = [search_mechanics(runs[fam][s]) for s in res["per_seed"]]
        g = res["goals"]
        rows.append({
            "family": fam, "seeds": g["seeds"], "cost": mech[0]["cost"], "ranking": mech[0]["ranking"],
            "placement": mech[0]["placement"],
            "supernet_epochs": mech[0]["supernet_epochs"],
            "mean_gap_at_latency_smaller_half": g["mean_gap_at_latency_smaller_half"],
            "min_gap_at_latency": g["min_gap_at_latency"], "mean_gap_at_macs": g["mean_gap_at_macs"],
            "gap_at_latency_smallest": g["gap_at_latency_smallest"], "b1_p50_span": g["b1_p50_span"]["mean"],
            "finetunes": sum(m["finetunes"] for m in mech), "steps": sum(m["steps"] for m in mech),
            "picks_differ": sum(m["picks_differ"] for m in mech), "picks": sum(len(m["picked"]) for m in mech),
            "even_picks_dominated": sum(m["even_picks_dominated"] for m in mech),
            "budget_spent": max((m["budget_spent"] for m in mech if m["budget_spent"] is not None), default=None),
        })  # fmt: skip
    return rows


def ablation_markdown(rows: list[dict[str, Any]]) -> str:
    f = _num
    head = ["family", "seeds", "cost", "supernet epochs", "ranking", "final sub-nets", "gap @ latency, smaller half",
            "min gap @ latency",
            "gap @ latency, smallest", "gap @ MACs", "b1 p50 span", "budget spent (max)", "fine-tuned steps",
            "re-selection: picks changed", "even picks it dominates"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        lines.append("| " + " | ".join([
            r["family"], str(r["seeds"]), r["cost"], str(r["supernet_epochs"]), r["ranking"], r["placement"],
            f(r["mean_gap_at_latency_smaller_half"]), f(r["min_gap_at_latency"]), f(r["gap_at_latency_smallest"]),
            f(r["mean_gap_at_macs"]), f(r["b1_p50_span"], ".2f") + "x", f(r["budget_spent"], ".0%"),
            f"{r['finetunes']}/{r['steps']}",
            f"{r['picks_differ']}/{r['picks']}", f"{r['even_picks_dominated']}/{r['picks_differ']}",
        ]) + " |")  # fmt: skip
    return "\n".join(lines)


def compare_families(runs: dict[str, dict[int, dict[str, Any]]], lat: dict[str, dict[str, float]],
                     baseline: Sequence[str] = ("usnet",)) -> dict[str, Any]:  # fmt: skip
    """Per searched family, over its seeds that have every US-Nets run of ``baseline``: ``per_seed`` rows,
    ``per_rank`` table, ``goals``, and ``usnet_runs`` (per seed, the US-Nets runs whose widths formed the baseline)."""
    out: dict[str, Any] = {}
    for fam in SEARCHED:
        baselines = {s: usnet_baseline(runs, s, baseline) for s in sorted(runs.get(fam, {}))}
        seeds = [s for s, b in baselines.items() if b is not None]
        if not seeds:
            continue
        twins = fam == "progressive"
        per_seed = {s: compare_seed(runs[fam][s], baselines[s], lat,
                                    runs.get("independent", {}).get(s) if twins else None,
                                    runs.get("independent-uniform", {}).get(s) if twins else None)
                    for s in seeds}  # fmt: skip
        out[fam] = {"per_seed": per_seed, **summarize(per_seed),
                    "usnet_runs": {s: baselines[s]["runs"] for s in seeds}}  # fmt: skip
    return out


PREDICTOR_PROBES = 24
PROBE_FAMILY = "random unit-grid sub-nets (probes)"
"""Random unit-grid sub-nets measured in every window beside the runs' architectures (issue 11, item 1: the
latency-table predictor judged on at least 20 random sub-nets, against medians over windows, not one noisy window)."""


def probe_architectures(arch: str, arch_kwargs: dict[str, Any], input_shape: tuple[int, ...],
                        n: int = PREDICTOR_PROBES, seed: int = 0) -> dict[str, dict[str, int]]:  # fmt: skip
    """``n`` random unit-grid sub-nets of ``arch`` (:func:`_common.random_unit_grid_widths`, the same draw as
    ``benchmarks/latency_table.py``), by :func:`arch_key`."""
    import torch

    from slimrt.models import create_model
    from slimrt.train.dynamic import DynamicNet

    net = DynamicNet(create_model(arch, **arch_kwargs), torch.zeros(1, *input_shape))
    out: dict[str, dict[str, int]] = {}
    for w in random_unit_grid_widths(net, n, seed):
        out.setdefault(arch_key(w), w)  # a repeated draw counts once
    return out


def predictor_check(table_path: Path, runs: dict[str, dict[int, dict[str, Any]]], lat: dict[str, dict[str, float]],
                    arch: str, arch_kwargs: dict[str, Any], input_shape: tuple[int, ...],
                    probes: dict[str, dict[str, int]] | None = None) -> dict[str, Any] | None:
    """The latency table's prediction against the measured batch-1 p50 of every architecture the runs recorded, per
    family (each searched family's sub-nets; US-Nets' grid split into widths on the table's unit grid and off it):
    what the latency-cost search could and could not see; ``probes`` (:func:`probe_architectures`) are one more
    family, random sub-nets no search chose. Errors are absolute (measured / predicted - 1) and
    relative to the full network (the ratio of the two to full's), which cancels a drift between the table's window
    and the aggregate's. None without a table."""
    if not table_path.is_file():
        return None
    import torch

    from slimrt.models import create_model
    from slimrt.train.dynamic import DynamicNet
    from slimrt.train.latency import LatencyPredictor, load_latency_table

    table = load_latency_table(table_path)
    net = DynamicNet(create_model(arch, **arch_kwargs), torch.zeros(1, *input_shape))
    pred = LatencyPredictor(net, table)
    out_grid = {part.key: list(part.out_grid) for part in table.parts}
    grids = {la.outputs[0][0]: out_grid[la.part] for la in table.layers if la.outputs and la.part in out_grid}
    fams: dict[str, list[dict[str, Any]]] = {}
    full_key = arch_key(net.full_spec().widths)
    full_ratio = lat[full_key]["b1_p50"] / pred.full_ms if full_key in lat else None
    for method, seeds in runs.items():
        for run in seeds.values():
            for kind, rows in (("subnets", run["subnets"]), ("grid", run.get("grid", []))):
                if method in USNETS and kind == "subnets":
                    continue
                for r in rows:
                    key = arch_key(r["widths"])
                    if key not in lat:
                        continue
                    fam = method
                    if kind == "grid":
                        on = all(_on_grid(grids.get(k), v) for k, v in r["widths"].items())
                        fam = f"{method} grid, {'on' if on else 'off'} the unit grid"
                    p, m = pred.ms(net.spec(r["widths"])), lat[key]["b1_p50"]
                    row = {"name": r["name"], "predicted_ms": p, "measured_ms": m, "error": m / p - 1.0}
                    if full_ratio is not None:
                        row["error_relative_to_full"] = m / p / full_ratio - 1.0
                    fams.setdefault(fam, []).append(row)
    for i, (key, widths) in enumerate((probes or {}).items()):
        if key in lat:
            p, m = pred.ms(net.spec(widths)), lat[key]["b1_p50"]
            row = {"name": f"p{i:02d}", "widths": widths, "predicted_ms": p, "measured_ms": m, "error": m / p - 1.0,
                   "windows": lat[key].get("windows")}  # fmt: skip
            if full_ratio is not None:
                row["error_relative_to_full"] = m / p / full_ratio - 1.0
            fams.setdefault(PROBE_FAMILY, []).append(row)
    out: dict[str, Any] = {"table": table_path.name, "full_predicted_ms": pred.full_ms, "families": {}}
    for fam, rows in fams.items():
        errs = sorted(abs(r["error"]) for r in rows)
        out["families"][fam] = {"n": len(rows), "median_abs_error": statistics.median(errs), "max_abs_error": errs[-1],
                                "rows": rows}  # fmt: skip
        if full_ratio is not None:
            rel = sorted(abs(r["error_relative_to_full"]) for r in rows)
            out["families"][fam] |= {"median_error_relative_to_full": statistics.median(rel),
                                     "max_error_relative_to_full": rel[-1]}  # fmt: skip
    return out


def predictor_markdown(check: dict[str, Any]) -> str:
    """One table of :func:`predictor_check`'s families."""
    head = ("| architectures | n | median abs error | max abs error | median rel. to full | max rel. to full |\n"
            "|---|---|---|---|---|---|\n")
    lines = []
    for fam, v in check["families"].items():
        rel = (f"{100 * v['median_error_relative_to_full']:.1f}% | {100 * v['max_error_relative_to_full']:.1f}%"
               if "median_error_relative_to_full" in v else "- | -")  # fmt: skip
        lines.append(f"| {fam} | {v['n']} | {100 * v['median_abs_error']:.1f}% | {100 * v['max_abs_error']:.1f}% | "
                     f"{rel} |")
    return (f"### Latency table `{check['table']}`: predicted vs measured batch-1 p50\n\n{head}"
            + "\n".join(lines))


def _on_grid(units: list[int] | None, width: int) -> bool:
    """Whether ``width`` is a point of the table's unit grid for that group (unknown group: assume it is)."""
    return True if units is None else width in units


def output_stem(threads: int | None, block: int = 1) -> str:
    """File stem of an aggregate's outputs: ``aggregate`` with the ``cpu`` profile's threads and one call per
    architecture per round, else ``aggregate-threads<N>``, ``aggregate-block<B>`` or both, so a series measured
    another way never mixes with the standard one."""
    return "aggregate" + ("" if threads is None else f"-threads{threads}") + ("" if block == 1 else f"-block{block}")


def machine_slug(mach: dict[str, Any]) -> str:
    """A file-name word for a kind of machine: its CPU model without trade marks and filler, and its core count
    (``Intel(R) Xeon(R) Processor``, 2 cores -> ``intel-xeon-2c``)."""
    words = re.sub(r"\((r|tm)\)|\b(processor|cpu|\d+-core)\b", " ", str(mach.get("cpu", "")).lower())
    return "-".join([*re.findall(r"[a-z0-9]+", words), f"{mach.get('cores', 0)}c"])


def same_machine(stored: dict[str, Any], mach: dict[str, Any]) -> bool:
    """Whether a stored aggregate's ``machine`` is this kind of machine (CPU model and core count)."""
    return (stored.get("cpu"), stored.get("cores")) == (mach["cpu"], mach["cores"])


def series_stem(results: Path, stem: str, mach: dict[str, Any]) -> str:
    """The stem of this machine's series: ``stem`` itself if ``results/<stem>.json`` is absent, unreadable or
    measured on this kind of machine, else ``<stem>-<machine slug>`` (:func:`machine_slug`), so a session on
    another CPU starts (or adds to) a series of its own instead of replacing the one stored."""
    path = results / f"{stem}.json"
    try:
        old = json.loads(path.read_text()).get("machine", {}) if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        old = None
    if old is None or same_machine(old, mach):
        return stem
    return f"{stem}-{machine_slug(mach)}"


def previous_windows(path: Path, mach: dict[str, Any]) -> list[dict[str, Any]]:
    """The latency windows an earlier aggregate (``path``) stored, if it was measured on the same kind of machine
    (CPU model and core count); an aggregate from before windows were kept counts as one window."""
    if not path.is_file():
        return []
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        log.warning("%s is unreadable; its latency windows are not reused", path)
        return []
    if not same_machine(old.get("machine", {}), mach):
        log.info("%s was measured on another machine (%s); starting a new series of latency windows", path,
                 old.get("machine", {}).get("cpu"))  # fmt: skip
        return []
    if "latency_windows" in old:
        return list(old["latency_windows"])
    if "latency" in old:
        lat = {k: {f: v for f, v in row.items() if f != "widths"} for k, row in old["latency"].items()}
        return [{"finished": old.get("finished"), "latency": lat}]
    return []


def stored_protocol(path: Path, archs: dict[str, dict[str, int]], windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The latency protocol of the stored aggregate ``path``, after checking that its ``windows`` measured every
    architecture in ``archs`` (what an aggregate without a new measurement needs); SystemExit names what is not."""
    if not windows:
        raise SystemExit(f"--stored-latency: {path} holds no latency window measured on this kind of machine "
                         f"({cpu_model()}, {os.cpu_count()} cores); run the aggregate without --stored-latency")
    seen = {k for w in windows for k, row in w["latency"].items() if "b1_p50" in row}
    missing = [k for k in archs if k not in seen]
    if missing:
        raise SystemExit(f"--stored-latency: {len(missing)} of {len(archs)} architectures of the run files were "
                         f"never measured in {path} (first: {missing[0]}); run the aggregate without "
                         "--stored-latency to measure them")
    return dict(json.loads(path.read_text()).get("latency_protocol", {}))


def _numeric(row: dict[str, Any]):
    """The latency fields of one window's row: ``(field, value)`` for every number except run counts."""
    return ((f, float(v)) for f, v in row.items() if isinstance(v, (int, float)) and not f.endswith("_runs"))


def _raw_fields(windows: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per architecture and field, the values of the windows that measured it, in window order (run counts dropped)."""
    out: dict[str, dict[str, list[float]]] = {}
    for w in windows:
        for key, row in w["latency"].items():
            for field, v in _numeric(row):
                out.setdefault(key, {}).setdefault(field, []).append(v)
    return out


def _references(raw: dict[str, dict[str, list[float]]], n_windows: int) -> list[str]:
    """The architectures every one of ``n_windows`` windows measured (batch-1 p50)."""
    return [k for k, fields in raw.items() if len(fields.get("b1_p50", [])) == n_windows]


SPEED_BINS = 5
"""At most this many knots per speed curve, with at least :data:`SPEED_BIN_MIN` reference architectures each."""
SPEED_BIN_MIN = 5


def layout_kind(key: str) -> str:
    """``"blocked"`` when every width of the architecture ``key`` (``group=width,...``) is a multiple of 4, which ONNX
    Runtime's CPU kernels run in their blocked layout, else ``"plain"`` (some convolutions run as plain im2col ones).
    A window's state moves the two kinds apart: 0.80x against 0.71x of their medians in the seventeenth window."""
    widths = [int(part.rsplit("=", 1)[1]) for part in key.split(",") if "=" in part]
    return "blocked" if widths and all(w % 4 == 0 for w in widths) else "plain"


def window_speeds(windows: Sequence[dict[str, Any]]) -> list[dict[str, dict[str, list[list[float]]]]]:
    """Per window, :func:`layout_kind` and latency field, how fast the machine ran in it, as a curve of knots
    ``[ms, factor]``: the *reference* architectures of that kind (those every window measured) sorted by their
    latency in the window and cut into up to :data:`SPEED_BINS` bins; a knot is a bin's median latency and the
    median of the window's value over that architecture's median over all windows. A kind without reference
    architectures uses the curve of all of them; no knots when no architecture is in every window.

    A window's state moves every latency together by tens of percent here (0.72x-1.24x of the median over
    seventeen windows), small networks more than large ones (window 2: 1.45x at 0.45 ms, 1.20x at 1.4 ms) and
    plain-layout ones more than blocked ones, so an architecture measured only in some windows must not be compared
    with medians over all of them unscaled."""
    raw = _raw_fields(windows)
    ref = _references(raw, len(windows))
    kinds = {layout_kind(k) for w in windows for k in w["latency"]}
    speeds: list[dict[str, dict[str, list[list[float]]]]] = []
    for w in windows:
        curves: dict[str, dict[str, list[list[float]]]] = {}
        for kind in sorted(kinds):
            own = [k for k in ref if layout_kind(k) == kind]
            curves[kind] = _speed_curve(w, own or ref, raw, len(windows))
        speeds.append(curves)
    return speeds


def _speed_curve(w: dict[str, Any], ref: Sequence[str], raw: dict[str, dict[str, list[float]]],
                 n_windows: int) -> dict[str, list[list[float]]]:  # fmt: skip
    pairs: dict[str, list[tuple[float, float]]] = {}
    for k in ref:
        for field, v in _numeric(w["latency"][k]):
            if len(raw[k][field]) == n_windows:
                med = statistics.median(raw[k][field])
                if med > 0 and v > 0:
                    pairs.setdefault(field, []).append((v, v / med))
    curve: dict[str, list[list[float]]] = {}
    for field, pts in pairs.items():
        pts.sort()
        bins = max(1, min(SPEED_BINS, len(pts) // SPEED_BIN_MIN))
        cuts = [round(j * len(pts) / bins) for j in range(bins + 1)]
        curve[field] = [[statistics.median(v for v, _ in pts[lo:hi]), statistics.median(r for _, r in pts[lo:hi])]
                        for lo, hi in zip(cuts, cuts[1:], strict=False)]  # fmt: skip
    return curve


def speed_at(knots: Sequence[Sequence[float]], ms: float) -> float:
    """The factor of a speed curve (:func:`window_speeds`) at ``ms``: linear between knots, flat beyond the ends,
    1.0 without knots."""
    if not knots:
        return 1.0
    if ms <= knots[0][0]:
        return float(knots[0][1])
    for (x0, y0), (x1, y1) in zip(knots, knots[1:], strict=False):
        if ms <= x1:
            return float(y0 + (y1 - y0) * (ms - x0) / (x1 - x0)) if x1 > x0 else float(y1)
    return float(knots[-1][1])


def scaling_check(windows: Sequence[dict[str, Any]], last: int = 2) -> dict[str, Any] | None:
    """How well :func:`combine_windows` reads an architecture measured in the ``last`` windows only: each
    architecture measured in every window is dropped from the others (so it is no reference of its own scaling),
    read from those windows scaled and unscaled, and compared with its median over all windows. Relative errors per
    :func:`layout_kind` (median, max); None with fewer than ``last + 1`` windows."""
    if len(windows) <= last:
        return None
    raw = _raw_fields(windows)
    keep = range(len(windows) - last, len(windows))
    errors: dict[str, dict[str, list[float]]] = {}
    for k in _references(raw, len(windows)):
        truth = statistics.median(raw[k]["b1_p50"])
        dropped = [{"latency": {kk: v for kk, v in w["latency"].items() if kk != k or i in keep}}
                   for i, w in enumerate(windows)]  # fmt: skip
        speeds = window_speeds(dropped)
        values = [windows[i]["latency"][k]["b1_p50"] for i in keep]
        scaled = statistics.median(v / speed_at(speeds[i][layout_kind(k)].get("b1_p50", []), v)
                                   for i, v in zip(keep, values, strict=True))  # fmt: skip
        plain = statistics.median(values)
        e = errors.setdefault(layout_kind(k), {"scaled": [], "unscaled": []})
        e["scaled"].append(abs(scaled / truth - 1))
        e["unscaled"].append(abs(plain / truth - 1))
    return {"windows_read": [len(windows) - last + 1, len(windows)], "field": "b1_p50",
            "kinds": {kind: {"n": len(e["scaled"]),
                             **{how: {"median": statistics.median(v), "max": max(v)} for how, v in e.items()}}
                      for kind, e in sorted(errors.items())}}  # fmt: skip


def combine_windows(windows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per architecture and field, the median over the windows that measured it of its value scaled to the common
    speed (divided by the factor of the window's :func:`window_speeds` curve of its layout kind at that value), so
    that architectures measured in different sets of windows compare as if measured side by side (within a window
    every architecture is measured interleaved)."""
    speeds = window_speeds(windows)
    out: dict[str, dict[str, list[float]]] = {}
    for w, speed in zip(windows, speeds, strict=True):
        for key, row in w["latency"].items():
            knots = speed[layout_kind(key)]
            for field, v in _numeric(row):
                out.setdefault(key, {}).setdefault(field, []).append(v / speed_at(knots.get(field, []), v))
    return {k: {**{f: statistics.median(v) for f, v in fields.items()}, "windows": len(fields.get("b1_p50", []))}
            for k, fields in out.items()}


def read_runs(results: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """Every run file ``<method>-seed<k>.json`` in ``results`` by method and seed (records without a ``method``,
    such as the pre-trained network's ``pretrained-seed<k>.json``, are not runs)."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for f in sorted(results.glob("*-seed*.json")):
        run = json.loads(f.read_text())
        if "method" in run:
            runs.setdefault(run["method"], {})[int(run["seed"])] = run
    return runs


def aggregate(results: Path, command: str, fresh_latency: bool = False, measure: bool = True,
              export_cache: Path | None = None, export_only: bool = False,
              threads: int | None = None, block: int = 1) -> int:  # fmt: skip
    """Read the run files in ``results``, measure latency here (one more window: the median over this and the
    earlier windows of the same kind of machine is what the tables read, unless ``fresh_latency``), write
    aggregate.{json,md,png}. Without ``measure``, the stored windows alone: every architecture of the run files
    must have been measured in one of them (SystemExit naming the missing ones otherwise). ``export_cache``: a
    folder of reused exports; with ``export_only``, fill it and write nothing else. ``threads``: measure with that
    many ONNX Runtime threads instead of the ``cpu`` profile's; ``block``: calls in a row per architecture (see
    :func:`measure_architectures`). Either makes a series of windows of its own, written to
    ``aggregate-threads<N>-block<B>.{json,md,png}`` (:func:`output_stem`); a series stored from another kind of
    machine is kept, and this machine's goes to ``<stem>-<machine slug>.*`` (:func:`series_stem`)."""
    runs = read_runs(results)
    if not runs:
        raise SystemExit(f"no run files (<method>-seed<k>.json) in {results}")
    archs: dict[str, dict[str, int]] = {}
    for seeds in runs.values():
        for run in seeds.values():
            for r in [*run["subnets"], *run.get("grid", [])]:
                archs.setdefault(arch_key(r["widths"]), r["widths"])
    any_run = next(iter(next(iter(runs.values())).values()))
    cfg = any_run["config"]
    arch_kwargs = {"in_channels": 1, "num_classes": 10, **cfg["arch_kwargs"]}
    probes = probe_architectures(cfg["arch"], arch_kwargs, (1, 28, 28))
    measured = {**probes, **archs}
    if export_only:
        if export_cache is None:
            raise SystemExit("--export-only needs --export-cache DIR (where the exports go)")
        export_architectures(measured, cfg["arch"], arch_kwargs, (1, 28, 28), export_cache)
        print(f"{len(measured)} architectures exported to {export_cache}; measure them with the same --export-cache")
        return 0
    load = os.getloadavg()
    mach = machine()
    stem = series_stem(results, output_stem(threads, block), mach)
    windows = [] if fresh_latency else previous_windows(results / f"{stem}.json", mach)
    if measure:
        now, protocol = measure_architectures(measured, cfg["arch"], arch_kwargs, (1, 28, 28), export_cache,
                                              threads, block)  # fmt: skip
        windows.append({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_average_at_start": load,
                        "latency": now})  # fmt: skip
    else:
        protocol = stored_protocol(results / f"{stem}.json", archs, windows)
    combined = combine_windows(windows)
    lat = {k: v for k, v in combined.items() if k in archs}
    probes = {k: w for k, w in probes.items() if k in combined}  # a stored reading has the probes it measured
    families = compare_families(runs, lat)
    wider = {v: compare_families(runs, lat, ("usnet", v)) for v in USNET_VARIANTS if v in runs}
    checks = {t.name: predictor_check(t, runs, {**lat, **{k: combined[k] for k in probes}}, cfg["arch"],
                                      arch_kwargs, (1, 28, 28), probes)
              for t in sorted(results.glob("latency-table-cpu*.json"))}  # fmt: skip
    check = checks.get("latency-table-cpu.json")
    per_seed = families.get("progressive", {}).get("per_seed", {})
    summary = {k: v for k, v in families.get("progressive", {}).items() if k != "per_seed"} or \
        {"per_rank": [], "goals": {}}
    payload = {
        "command": command, "commit": git_commit(), "machine": mach, "load_average_at_start": load,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": {m: sorted(s) for m, s in runs.items()},
        "pretrained": {s: r.get("pretrained", {}).get("test_accuracy") for s, r in runs.get("usnet", {}).items()},
        "latency_protocol": protocol, "latency_windows": windows,
        "latency_window_speeds": window_speeds(windows),
        "latency_scaling_check": scaling_check(windows),
        "latency": {k: {"widths": archs[k], **v} for k, v in lat.items()},
        "per_seed": per_seed, **summary, "families": families,
        "families_with_usnet_variant": wider,
    }  # fmt: skip
    payload["ablation"] = ablation(runs, families)
    payload["predictor_check"] = check  # the table the latency-cost searches used
    payload["predictor_checks"] = checks  # every table in the folder (later ones: the predictor as it improved)
    write_results(results / f"{stem}.json", payload)
    sections = [f"### {fam} vs US-Nets{baseline_note(res)}\n\n{markdown(res)}" for fam, res in families.items()]
    for res in wider.values():
        sections += [f"### {fam} vs US-Nets{baseline_note(r)}\n\n{markdown(r)}\n\n{goals_line(r['goals'])}"
                     for fam, r in res.items()]
    sections += [predictor_markdown(c) for c in checks.values() if c is not None]
    if payload["ablation"]:
        sections.append("### Ablation: every searched family against US-Nets of its seeds (gaps in points, "
                        "means over seeds)\n\n" + ablation_markdown(payload["ablation"]))
    table = "\n\n".join(sections) or "(no seed has both a progressive and a US-Nets run yet)"
    check = payload["latency_scaling_check"]
    check_line = "" if check is None else (
        " Read from the last two windows only, an architecture measured in every window lands within "
        + "; ".join(f"{k} kind: median {100 * v['scaled']['median']:.1f}%, max {100 * v['scaled']['max']:.1f}% of "
                    f"its median over all windows scaled ({100 * v['unscaled']['median']:.1f}% / "
                    f"{100 * v['unscaled']['max']:.1f}% unscaled, {v['n']} architectures)"
                    for k, v in check["kinds"].items()) + " (`latency_scaling_check`).")
    threads_note = ("" if threads is None else f", ONNX Runtime with {threads} intra-op thread(s)") + block_words(block)
    (results / f"{stem}.md").write_text(
        f"Measured on {cpu_model()} ({os.cpu_count()} cores){threads_note}; latency: median of {len(windows)} "
        f"measurement window(s), each scaled to the common speed (`latency_window_speeds` in {stem}.json) "
        f"({', '.join(str(w['finished']) for w in windows)}).{check_line}\n\n{table}\n")
    plot(results / f"{stem}.png", runs, lat)
    print(table)
    print(json.dumps({fam: res["goals"] for fam, res in families.items()}, indent=2))
    for v, res in wider.items():
        print(f"with {v}:", json.dumps({fam: r["goals"] for fam, r in res.items()}, indent=2))
    return 0
