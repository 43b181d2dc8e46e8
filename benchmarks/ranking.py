"""Ranking quality at matched MACs: which units does each ranking remove, and what does that cost before any
fine-tuning?

The ablation in ``accuracy.py --ablation`` runs the whole search per ranking, so its rows differ in both the
ranking and the MACs the re-selection happens to pick. This benchmark isolates the ranking: from the same
pre-trained full network (the quick-mode network ``accuracy.py`` caches), each ranking scores the units once, the
lowest-ranked units are removed until the MACs fall to each target, BN statistics are recalibrated, and the
validation accuracy is measured. No fine-tuning, so differences come from the ranking alone. Random ranking is
averaged over several seeds; the noise ranking is repeated over seeds too (its noise draws are random).

Usage::

    python benchmarks/ranking.py --threads 2     # writes benchmarks/results/ranking-resnet20.json
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import RESULTS, build_config, jsonable, pretrain_shared, write_json  # noqa: E402

TARGETS = (0.85, 0.7, 0.5, 0.3)
log = logging.getLogger("bench.ranking")


def one_shot(net, data, cfg, ranking: str, seed: int, calib, overrides: dict[str, Any]) -> dict[str, Any]:
    """Score the full network's units once with ``ranking``; prune to every target; recalibrate; validate."""
    from slimrt.train.loops import calibrate, evaluate
    from slimrt.train.methods.progressive import group_units, next_candidate
    from slimrt.train.ranking import RankContext, get_ranking

    n = copy.deepcopy(net)
    full = n.full_spec()
    units = group_units(n, full, cfg.group_size, cfg.min_units)
    knobs = {"noise_steps": cfg.search_steps(len(data.y_train)).noise_steps, "noise_lr": cfg.noise_lr,
             "noise_reward": cfg.noise_reward, "noise_init": cfg.noise_init, **overrides}  # fmt: skip
    ctx = RankContext(data=data, seed=seed, key=1, batch_size=cfg.noise_batch_size, **knobs)
    t0 = time.perf_counter()
    scores = get_ranking(ranking)(n, full, units, ctx)
    seconds = time.perf_counter() - t0
    points = []
    for t in TARGETS:
        m = copy.deepcopy(n)
        spec, _ = next_candidate(m, full, units, scores, target_macs=t * full.macs, name="x", cfg=cfg)
        calibrate(m, [spec], calib, None)
        acc = evaluate(m, spec, data.x_val, data.y_val, cfg.eval_batch_size, None)
        points.append({"target": t, "macs_fraction": spec.macs / full.macs, "val_accuracy": acc})
    return {"seed": seed, "rank_seconds": seconds, "points": points}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--seeds", type=int, default=3, help="repeats of the random and noise rankings")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache", type=Path, default=Path("/tmp/slimrt-accuracy-cache"))
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from slimrt.train.data import load_dataset
    from slimrt.train.loops import calibration_batches, evaluate, make_progress

    if args.threads:
        torch.set_num_threads(args.threads)
    ns = argparse.Namespace(quick=True, set=[], arch=args.arch, data_dir=args.data_dir, device="cpu", seed=0)
    cfg = build_config(ns)
    data = load_dataset(cfg.dataset, root=cfg.data_dir, val_size=cfg.val_size, limit_train=cfg.limit_train,
                        seed=cfg.seed)  # fmt: skip
    t_start = time.perf_counter()
    with make_progress() as progress:
        net, _, _, pre_acc = pretrain_shared(cfg, data, progress, args.cache)
    calib = calibration_batches(data, cfg.search_steps(len(data.y_train)).calib_batches, cfg.batch_size, cfg.seed)
    variants = [("noise", "noise", {}), ("noise, 100 steps", "noise", {"noise_steps": 100}),
                ("l1", "l1", {}), ("bn", "bn", {}), ("random", "random", {})]  # fmt: skip
    rows = []
    for label, ranking, over in variants:
        seeds = range(args.seeds) if ranking in ("noise", "random") else range(1)
        runs = [one_shot(net, data, cfg, ranking, s, calib, over) for s in seeds]
        mean = [statistics.fmean(r["points"][i]["val_accuracy"] for r in runs) for i in range(len(TARGETS))]
        log.info("%-18s %s", label, " ".join(f"{a:6.2f}" for a in mean))
        rows.append({"variant": label, "ranking": ranking, "overrides": over, "runs": runs,
                     "mean_val_accuracy": mean})  # fmt: skip
    full_val = evaluate(net, None, data.x_val, data.y_val, cfg.eval_batch_size)
    table = ["| ranking | " + " | ".join(f"{int(100 * t)}% MACs" for t in TARGETS) + " |",
             "|---|" + "---|" * len(TARGETS)]  # fmt: skip
    for r in rows:
        table.append(f"| {r['variant']} (n={len(r['runs'])}) | "
                     + " | ".join(f"{a:.2f}" for a in r["mean_val_accuracy"]) + " |")  # fmt: skip
    result = {
        "arch": cfg.arch, "dataset": data.name, "command": "python benchmarks/ranking.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "pretrained_test_accuracy": pre_acc, "full_val_accuracy": full_val, "targets": list(TARGETS),
        "config": cfg.model_dump(), "variants": rows, "seconds": time.perf_counter() - t_start,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "table": "\n".join(table),
    }  # fmt: skip
    out = args.out_dir / f"ranking-{cfg.arch}.json"
    write_json(out, jsonable(result))
    print(result["table"])
    print(f"full network: {full_val:.2f}% validation; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
