"""Accuracy benchmark: progressive search vs US-Nets vs independently trained sub-nets, at equal training compute.

    python benchmarks/accuracy.py --quick                 # ~15 min on 2 CPU cores (ResNet-20, 15k images)
    python benchmarks/accuracy.py                         # full mode: long background CPU run or a GPU session
    python benchmarks/accuracy.py --quick --ablation      # ranking noise/l1/random, threshold, re-selection
    python benchmarks/accuracy.py --mode standard --method usnet --seed 1    # the deciding benchmark (issue 10):
    python benchmarks/accuracy.py --mode standard --aggregate               # see benchmarks/accuracy_standard.py

Protocol (one run):
1. Pre-train the full network once (``pretrain`` phase); every method starts from these weights (independent
   starts from scratch but gets the pre-training compute in its budget).
2. Progressive search (``slimrt.train.methods.progressive.progressive_search``) -> K nested sub-nets.
3. US-Nets (``slimrt.train.methods.usnet.train_usnet``) from the same pre-trained weights, evaluated at the uniform
   widths whose MACs match the progressive sub-nets'. Budget: the progressive run's training MACs plus its ranking MACs
   (forward+backward through the network for the noise scales), so US-Nets gets at least as much compute.
4. Independent (``slimrt.train.methods.independent.train_independent``): each progressive architecture trained
   alone from scratch; together they get the pre-training + progressive budget (equal steps per sub-net).
Compute is counted in one unit for all methods: 3 x MACs per trained image (forward + backward), 1 x per forward.

Writes ``benchmarks/results/accuracy-<arch>.json`` (+ ``.png``) or ``ablation-<arch>.json``; full mode adds a
``-full`` suffix so it never overwrites the quick results.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

QUICK = {
    "limit_train": 15000, "val_size": 2000, "pretrain_epochs": 3, "epochs": 3, "subnets": 4, "min_macs": 0.1,
    "macs_step": 0.1, "noise_steps": 30, "finetune_steps": 20, "threshold": 2.0, "calib_batches": 10,
    "batch_size": 128, "eval_batch_size": 1000,
}  # fmt: skip
FULL = {
    "limit_train": None, "val_size": 5000, "pretrain_epochs": 15, "epochs": 8, "subnets": 6, "min_macs": 0.1,
    "macs_step": 0.05, "noise_steps": 100, "finetune_steps": 150, "calib_batches": 20, "batch_size": 128,
    "eval_batch_size": 1000,
}  # fmt: skip
ABLATIONS = {
    "baseline (noise, threshold, re-selection)": {},
    "ranking=l1": {"ranking": "l1"},
    "ranking=random": {"ranking": "random"},
    "threshold off (fine-tune every step)": {"finetune_always": True},
    "threshold off (never fine-tune)": {"threshold": float("inf")},
    "re-selection off": {"reselect": False},
}

log = logging.getLogger("bench.accuracy")


def jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def write_json(path: Path, payload: dict[str, Any]) -> None:
    from slimrt.io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(jsonable(payload), indent=2) + "\n")


def _rows(specs: list, report_rows: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    out = []
    for s in specs:
        row = {"name": s.name, "macs": s.macs, "params": s.params, "test_accuracy": s.test_accuracy,
               "val_accuracy": s.val_accuracy}  # fmt: skip
        if report_rows and s.name in report_rows:
            row.update({k: v for k, v in report_rows[s.name].items() if k not in row})
        out.append(row)
    return out


def summarize(prog: list[dict], us: list[dict], ind: list[dict]) -> dict[str, Any]:
    """Gaps in test accuracy (points) between methods at matched sub-nets (lists aligned, largest first)."""
    macs = [r["macs"] for r in prog]
    lo, hi = min(macs), max(macs)
    mid = lo + (hi - lo) / 2
    gaps = [p["test_accuracy"] - u["test_accuracy"] for p, u in zip(prog, us, strict=True)]
    small = [g for g, m in zip(gaps, macs, strict=True) if m <= mid]
    ind_gaps = [p["test_accuracy"] - i["test_accuracy"] for p, i in zip(prog, ind, strict=True)]
    return {
        "gap_vs_usnet_per_subnet": gaps,
        "mean_gap_vs_usnet": sum(gaps) / len(gaps),
        "mean_gap_vs_usnet_smaller_half": sum(small) / len(small) if small else None,
        "smaller_half_rule": f"sub-nets with MACs <= {mid:.0f} (midpoint of the progressive MACs range)",
        "smaller_half_count": len(small),
        "min_gap_vs_usnet": min(gaps),
        "max_gap_vs_usnet": max(gaps),
        "gap_vs_independent_per_subnet": ind_gaps,
        "mean_gap_vs_independent": sum(ind_gaps) / len(ind_gaps),
        "min_gap_vs_independent": min(ind_gaps),
        "within_0.5_of_independent": all(g >= -0.5 for g in ind_gaps),
        "goal_matches_usnet_everywhere": min(gaps) >= 0,
        "goal_plus1_smaller_half": (sum(small) / len(small) >= 1.0) if small else None,
        "usnet_macs_mismatch_max_pct": max(abs(u["macs"] - p["macs"]) / p["macs"] * 100 for p, u in zip(prog, us,
                                                                                                       strict=True)),
    }


def pretrain_shared(cfg, data, progress, cache: Path | None):
    """The common pre-trained full network (loaded from ``cache`` when a matching file exists)."""
    import torch

    from slimrt.train.loops import ComputeMeter, evaluate, fixed_sampler, train_epochs
    from slimrt.train.trainer import build_net

    net = build_net(cfg, data)
    meter = ComputeMeter()
    key = f"{cfg.arch}-{data.name}-n{len(data.y_train)}-e{cfg.pretrain_epochs}-b{cfg.batch_size}-lr{cfg.lr}-s{cfg.seed}"
    path = cache / f"pretrained-{key}.pt" if cache else None
    t0 = time.perf_counter()
    if path is not None and path.exists():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        net.model.load_state_dict(blob["state_dict"])
        meter.load_state_dict(blob["meter"])
        seconds = float(blob["seconds"])
        log.info("pre-trained weights from cache %s", path)
    else:
        train_epochs(net, data, fixed_sampler([net.full_spec()]), cfg.pretrain_epochs, cfg, progress, meter,
                     lr=cfg.lr, warmup_epochs=cfg.warmup_epochs, phase="pretrain")  # fmt: skip
        seconds = time.perf_counter() - t0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save({"state_dict": {k: v.cpu() for k, v in net.model.state_dict().items()},
                        "meter": meter.state_dict(), "seconds": seconds}, tmp)  # fmt: skip
            os.replace(tmp, path)
    acc = evaluate(net, None, data.x_test, data.y_test, cfg.eval_batch_size)
    return net, meter, seconds, acc


def _progressive(cfg, data, pre, progress):
    from slimrt.train.loops import ComputeMeter
    from slimrt.train.methods.progressive import progressive_search

    net = copy.deepcopy(pre)
    meter = ComputeMeter()
    t0 = time.perf_counter()
    specs, report = progressive_search(net, data, cfg, progress, meter)
    return specs, report, meter, time.perf_counter() - t0


def _method_compute(meter, seconds: float) -> dict[str, Any]:
    return {"train_macs": meter.train_macs, "other_macs": meter.other_macs, "train_images": meter.train_images,
            "steps": meter.steps, "by_phase": dict(meter.by_phase), "wall_seconds": seconds}  # fmt: skip


def run_comparison(cfg, data, args, progress) -> dict[str, Any]:
    from slimrt.train.loops import ComputeMeter
    from slimrt.train.methods.independent import train_independent
    from slimrt.train.methods.usnet import train_usnet

    pre, pre_meter, pre_seconds, pre_acc = pretrain_shared(cfg, data, progress, args.cache)
    log.info("pre-trained full network: test %.2f%% (%.0f s)", pre_acc, pre_seconds)

    p_specs, p_report, p_meter, p_sec = _progressive(cfg, data, pre, progress)
    log.info("progressive: %s", ", ".join(f"{s.name} {s.macs} {s.test_accuracy:.2f}%" for s in p_specs))
    budget = p_meter.train_macs + p_meter.by_phase.get("rank", 0)

    u_net = copy.deepcopy(pre)
    u_meter = ComputeMeter()
    t0 = time.perf_counter()
    u_specs, u_report = train_usnet(cfg, data, u_net, progress, u_meter, targets=[s.macs for s in p_specs],
                                    budget_macs=budget)  # fmt: skip
    u_sec = time.perf_counter() - t0
    log.info("usnet: %s", ", ".join(f"{s.name} {s.macs} {s.test_accuracy:.2f}%" for s in u_specs))

    i_meter = ComputeMeter()
    t0 = time.perf_counter()
    i_budget = budget + pre_meter.train_macs
    i_specs, i_report = train_independent(cfg, data, pre, p_specs, progress, i_meter, budget_macs=i_budget)
    i_sec = time.perf_counter() - t0
    log.info("independent: %s", ", ".join(f"{s.name} {s.macs} {s.test_accuracy:.2f}%" for s in i_specs))

    diagnostics: dict[str, Any] = {}
    if args.diagnostics:
        # Same number of training MACs as the progressive *final* fine-tune only (its search spending left out):
        # separates "searched non-uniform widths" from "how the compute was spent".
        d_net = copy.deepcopy(pre)
        d_meter = ComputeMeter()
        t0 = time.perf_counter()
        d_budget = p_meter.by_phase.get("finetune", 0)
        d_specs, d_report = train_usnet(cfg, data, d_net, progress, d_meter, targets=[s.macs for s in p_specs],
                                        budget_macs=d_budget)  # fmt: skip
        d_rows = _rows(d_specs)
        diagnostics["usnet_budget_of_final_finetune"] = {
            "subnets": d_rows, "budget_macs": d_budget, "steps": d_report.steps, "epochs": d_report.epochs,
            "compute": _method_compute(d_meter, time.perf_counter() - t0),
            "gap_progressive_minus_this": [p.test_accuracy - d["test_accuracy"] for p, d in zip(p_specs, d_rows,
                                                                                               strict=True)],
        }  # fmt: skip
        log.info("usnet (final fine-tune budget): %s", ", ".join(f"{s.name} {s.test_accuracy:.2f}%" for s in d_specs))

    prog_rows = _rows(p_specs)
    us_rows = _rows(u_specs, {s.name: {"width_ratio": r, "target_macs": t} for s, r, t in
                              zip(u_specs, u_report.ratios, u_report.targets, strict=True)})  # fmt: skip
    ind_rows = _rows(i_specs)
    return {
        "pretrain": {"test_accuracy": pre_acc, "train_macs": pre_meter.train_macs, "wall_seconds": pre_seconds,
                     "epochs": cfg.pretrain_epochs},  # fmt: skip
        "methods": {"progressive": prog_rows, "usnet": us_rows, "independent": ind_rows},
        "compute": {
            "progressive": _method_compute(p_meter, p_sec),
            "usnet": {**_method_compute(u_meter, u_sec), "budget_macs": budget, "steps": u_report.steps,
                      "epochs": u_report.epochs},  # fmt: skip
            "independent": {**_method_compute(i_meter, i_sec), "budget_macs": i_budget,
                            "steps_per_subnet": i_report.per_subnet[0]["steps"], "epochs": i_report.epochs},
            "budget_rule": "usnet: progressive train MACs + ranking MACs (both start from the shared pre-trained "
                           "net); independent: that + the pre-training MACs, split into equal steps per sub-net. "
                           "MACs are 3 x forward MACs per trained image.",
        },  # fmt: skip
        "search": {
            "finetunes": p_report.finetunes,
            "candidates": len(p_report.candidates),
            "selected": p_report.selected,
            "candidate_curve": [{"name": c.spec.name, "macs_fraction": c.macs_fraction, "val_accuracy": c.val_accuracy,
                                 "finetuned": c.finetuned, "val_after_finetune": c.val_after_finetune,
                                 "final_val_accuracy": c.final_val_accuracy} for c in p_report.candidates],
            "timings": p_report.timings,
        },  # fmt: skip
        "usnet_report": u_report.model_dump(),
        "independent_report": i_report.model_dump(),
        "summary": summarize(prog_rows, us_rows, ind_rows),
        "diagnostics": diagnostics,
    }


def run_ablation(cfg, data, args, progress) -> dict[str, Any]:
    pre, pre_meter, pre_seconds, pre_acc = pretrain_shared(cfg, data, progress, args.cache)
    rows = []
    for label, change in ABLATIONS.items():
        c = cfg.updated(**change) if change else cfg
        specs, report, meter, sec = _progressive(c, data, pre, progress)
        accs = [s.test_accuracy for s in specs]
        rows.append({
            "variant": label, "config": change, "finetunes": report.finetunes, "candidates": len(report.candidates),
            "subnets": _rows(specs), "mean_test_accuracy": sum(accs) / len(accs),
            "train_macs": meter.train_macs, "rank_macs": meter.by_phase.get("rank", 0), "wall_seconds": sec,
        })  # fmt: skip
        log.info("ablation %s: mean %.2f%%, %d fine-tunes, %.0f s", label, rows[-1]["mean_test_accuracy"],
                 report.finetunes, sec)  # fmt: skip
    return {"pretrain": {"test_accuracy": pre_acc, "train_macs": pre_meter.train_macs,
                         "wall_seconds": pre_seconds}, "variants": rows}  # fmt: skip


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def comparison_table(result: dict[str, Any]) -> str:
    m = result["methods"]
    rows = [["sub-net", "MACs (M)", "progressive %", "US-Nets % (MACs M)", "independent %", "prog - US"]]
    for p, u, i in zip(m["progressive"], m["usnet"], m["independent"], strict=True):
        rows.append([p["name"], f"{p['macs'] / 1e6:.2f}", f"{p['test_accuracy']:.2f}",
                     f"{u['test_accuracy']:.2f} ({u['macs'] / 1e6:.2f})", f"{i['test_accuracy']:.2f}",
                     f"{p['test_accuracy'] - u['test_accuracy']:+.2f}"])  # fmt: skip
    return _table(rows)


def ablation_table(result: dict[str, Any]) -> str:
    k = max(len(v["subnets"]) for v in result["variants"])
    # Variants pick their sub-nets at different MACs: columns are ranks by size, each cell shows its MACs.
    rows = [["variant", "fine-tunes", *[f"sub-net {i + 1} % (MACs)" for i in range(k)], "mean %"]]
    for v in result["variants"]:
        accs = [f"{s['test_accuracy']:.2f} ({s['macs'] / 1e6:.1f}M)" for s in v["subnets"]]
        accs += [""] * (k - len(accs))
        rows.append([v["variant"], str(v["finetunes"]), *accs, f"{v['mean_test_accuracy']:.2f}"])
    return _table(rows)


def _plot(result: dict[str, Any], out: Path, title: str) -> None:
    try:
        from slimrt.plot import plot_accuracy_vs_macs
    except ImportError:  # pragma: no cover - plot helper absent
        plot_accuracy_vs_macs = None
    methods = {name: [{"macs": r["macs"], "accuracy": r["test_accuracy"], "name": r["name"]} for r in rows]
               for name, rows in result["methods"].items()}  # fmt: skip
    if plot_accuracy_vs_macs is not None:
        plot_accuracy_vs_macs(methods, out, title=title)
        return
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in methods.items():
        ax.plot([p["macs"] / 1e6 for p in pts], [p["accuracy"] for p in pts], marker="o", label=name)
    ax.set_xlabel("MACs (M)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, bbox_inches="tight")
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet20", help="resnet20, vgg11_bn, mobilenet_v1, ...")
    p.add_argument("--quick", action="store_true", help="~15 minutes on 2 CPU cores")
    p.add_argument("--ablation", action="store_true", help="progressive-search ablation table instead")
    p.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST files")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--cache", type=Path, default=Path("/tmp/slimrt-accuracy-cache"),
                   help="where the shared pre-trained network is cached between runs")
    p.add_argument("--no-diagnostics", dest="diagnostics", action="store_false",
                   help="skip the extra US-Nets run at the progressive final fine-tune's budget")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a SearchConfig field (JSON value), e.g. --set epochs=3")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    from slimrt.train.config import SearchConfig

    base = dict(QUICK if args.quick else FULL)
    base.update({"arch": args.arch, "dataset": "fashion-mnist", "data_dir": args.data_dir, "device": args.device,
                 "seed": args.seed, "method": "progressive"})  # fmt: skip
    for item in args.set:  # last, so that --set wins over every default and flag
        k, _, v = item.partition("=")
        try:
            base[k] = json.loads(v)
        except json.JSONDecodeError:
            base[k] = v
    return SearchConfig.build(base, source="benchmark config")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--mode", choices=["quick", "full", "standard"], default=None)
    mode, _ = pre.parse_known_args(argv)
    if mode.mode == "standard":  # one (method, seed) run per command, or the aggregate: see accuracy_standard.py
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from accuracy_standard import main as standard_main

        return standard_main(argv)
    if mode.mode is not None:
        _, rest = pre.parse_known_args(argv)  # argv without --mode and its value
        argv = rest + (["--quick"] if mode.mode == "quick" else [])
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from slimrt.train.data import load_dataset
    from slimrt.train.loops import make_progress

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = build_config(args)
    data = load_dataset(cfg.dataset, root=cfg.data_dir, val_size=cfg.val_size, limit_train=cfg.limit_train,
                        seed=cfg.seed)  # fmt: skip
    command = "python benchmarks/accuracy.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    header = {
        "arch": cfg.arch, "dataset": data.name, "mode": "quick" if args.quick else "full", "command": command,
        "data": data.describe(), "config": cfg.model_dump(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "device": cfg.device},
    }  # fmt: skip
    t0 = time.perf_counter()
    with make_progress(disable=not sys.stderr.isatty()) as progress:
        if args.ablation:
            result = run_ablation(cfg, data, args, progress)
        else:
            result = run_comparison(cfg, data, args, progress)
    payload = {**header, **result, "wall_seconds": time.perf_counter() - t0,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
    suffix = "" if args.quick else "-full"  # a full run never overwrites the committed quick results
    if args.ablation:
        out = args.out_dir / f"ablation-{cfg.arch}{suffix}.json"
        payload["table"] = ablation_table(payload)
        write_json(out, payload)
        print(payload["table"])
    else:
        out = args.out_dir / f"accuracy-{cfg.arch}{suffix}.json"
        payload["table"] = comparison_table(payload)
        write_json(out, payload)
        png = out.with_suffix(".png")
        _plot(payload, png, f"{cfg.arch} on {data.name} ({payload['mode']} mode)")
        print(payload["table"])
        print(json.dumps(jsonable(payload["summary"]), indent=2))
        print(f"plot: {png}")
    print(f"wrote {out} in {payload['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
