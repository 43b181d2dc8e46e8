"""Issue 11's goals read with the latency a user of slimrt sees: every searched family exported as the artifact it
would ship and measured by ``slimrt bench`` (the product's own protocol, the one the runtime selects with).

    python benchmarks/artifact_latency.py --build-only     # export the artifacts (cached in --work-dir)
    python benchmarks/artifact_latency.py                  # one window: bench every artifact, add it, write tables
    python benchmarks/artifact_latency.py --windows 4      # four windows in a row
    python benchmarks/artifact_latency.py --stored         # tables from the stored windows only (no measurement)

Why: the standard aggregate (``accuracy.py --mode standard --aggregate``) times 200-odd architectures round-robin,
so every call runs on caches the others filled; the runtime instead serves the sub-nets of one artifact, profiled by
``slimrt bench``, which interleaves only that artifact's sub-nets. The issue's span baseline ("1.4x in the demo")
came from that bench. Here:

- one artifact per searched family and seed (its six sub-nets, trained weights of that seed's pre-trained network
  sliced to the recorded widths: latency depends on the widths, not the weights), written by ``slimrt export``'s
  code (``export_artifact``: one ONNX per sub-net over one weights file, validated against PyTorch, checksummed),
  with the full network added as a reference sub-net when the family does not have it;
- the US-Nets grid (49 uniform widths, the same architectures at every seed) dealt into nine artifacts of five or
  six widths spread over the range (width ``i``, ``i + 9``, ``i + 18``, ...), each with the full network, so a
  US-Nets width is measured beside as many others (6-7 sub-nets), as large and as small, as a family's sub-net is;
- a window benches every artifact once with ``run_bench`` and the ``cpu`` device profile (and, with
  ``--thread-variant 1``, the same sub-nets at one thread, interleaved, as ``slimrt bench --thread-variants 1``
  stores them for the runtime's (sub-net, threads) choice), artifacts in rotating order;
- every latency is divided by the full network's p50 *of the same bench* (the same seconds, the same interleaving),
  so a window the VM ran slower as a whole moves nothing; the median of those ratios over windows, times the median
  full-network p50 over every bench, is the latency the tables use;
- the matched tables and the goals are the aggregate's own (``compare_seed``, ``summarize``), each seed against
  the grid of its ``usnet`` run, once at the profile's thread count and once at the faster of the two thread counts
  per sub-net (what the runtime can serve when it has both);
- the family's span is its largest sub-net's p50 over its smallest's, from that family's own benches.

Results (``artifact-latency[-<machine>].json`` and ``.md`` beside the run files; a machine of another kind starts a
series of its own) keep every window, so runs add up across sessions; artifacts are cached under ``--work-dir``
(``runs/artifact-latency``), keyed by their sub-nets, the weights file and the exporter's code.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, write_results  # noqa: E402
from accuracy_aggregate import (  # noqa: E402
    SEARCHED,
    _num,
    arch_key,
    compare_seed,
    goals_line,
    read_runs,
    series_stem,
    summarize,
    usnet_baseline,
)
from accuracy_standard import git_commit, machine  # noqa: E402

from slimrt.io import atomic_write_text  # noqa: E402

log = logging.getLogger("bench.artifact_latency")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "accuracy" / "standard-resnet20"
WORK = ROOT / "runs" / "artifact-latency"
REF = "ref-full"
"""Name of the full network added to an artifact whose family does not have it (the reference of its benches)."""
USNET_PER_ARTIFACT = 6
SERIES = ("profile", "best")
"""``profile``: the device profile's thread count; ``best``: per sub-net the faster of it and the thread variant."""


# ------------------------------------------------------------------------------------------------ the artifacts

def full_row(runs: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """The full network's grid row: the largest US-Nets grid width (every group at its full channel count)."""
    for seed_runs in runs.get("usnet", {}).values():
        return max(seed_runs["grid"], key=lambda g: g["macs"])
    raise SystemExit("no usnet run file: the matched tables need US-Nets' grid")


def full_widths(runs: dict[str, dict[int, dict[str, Any]]]) -> dict[str, int]:
    """The full network's widths (:func:`full_row`)."""
    return dict(full_row(runs)["widths"])


def _spec(row: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    return {"name": name or row["name"], "widths": dict(row["widths"]), "macs": int(row["macs"]),
            "params": int(row.get("params", 0)), "test_accuracy": row.get("test_accuracy")}  # fmt: skip


def with_reference(subnets: list[dict[str, Any]], full: dict[str, int],
                   full_row: dict[str, Any]) -> list[dict[str, Any]]:  # fmt: skip
    """``subnets`` with the full network appended as ``ref-full`` unless one of them is the full network."""
    if any(arch_key(s["widths"]) == arch_key(full) for s in subnets):
        return subnets
    return [*subnets, _spec(full_row, REF)]


def usnet_chunks(grid: Sequence[dict[str, Any]], per: int = USNET_PER_ARTIFACT) -> list[list[dict[str, Any]]]:
    """The grid's widths (largest first) dealt into ``ceil(n / per)`` artifacts: artifact ``i`` holds widths ``i``,
    ``i + k``, ``i + 2k``, ... so each spans the range like a family; every width lands in exactly one."""
    rows = sorted(grid, key=lambda g: -g["macs"])
    k = -(-len(rows) // per)
    return [rows[i::k] for i in range(k)]


def plan_artifacts(runs: dict[str, dict[int, dict[str, Any]]], families: Sequence[str] | None = None
                   ) -> list[dict[str, Any]]:
    """Every artifact to bench: ``{"id", "kind" ("family" or "usnet"), "family", "seed", "subnets"}``. Families:
    those of ``SEARCHED`` (or ``families``) with a run at a seed that has a ``usnet`` run."""
    full = full_row(runs)
    out = []
    for fam in families or SEARCHED:
        for seed, run in sorted(runs.get(fam, {}).items()):
            if seed not in runs["usnet"]:
                continue
            subs = with_reference([_spec(s) for s in run["subnets"]], full["widths"], full)
            out.append({"id": f"{fam}-seed{seed}", "kind": "family", "family": fam, "seed": seed, "subnets": subs})
    usnet_seed = min(runs["usnet"])
    grid = runs["usnet"][usnet_seed]["grid"]
    for i, chunk in enumerate(usnet_chunks(grid)):
        subs = with_reference([_spec(g) for g in chunk], full["widths"], full)
        out.append({"id": f"usnet-{i}", "kind": "usnet", "family": "usnet", "seed": usnet_seed, "subnets": subs})
    return out


@functools.cache
def _file_hash(*paths: Path) -> str:
    """sha256 of the files' bytes, read once per run (the exporter's code, a weights file)."""
    return hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()


def _cache_key(art: dict[str, Any], weights: Path) -> str:
    import slimrt.exporters.artifact_writer as writer
    import slimrt.exporters.onnx as onnx_exporter

    code = _file_hash(Path(writer.__file__), Path(onnx_exporter.__file__))
    blob = json.dumps([art["subnets"], _file_hash(weights), code], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_artifact(art: dict[str, Any], results: Path, work: Path) -> Path:
    """The artifact of ``art`` under ``work`` (built by ``export_artifact`` from a checkpoint of the seed's
    pre-trained weights and the recorded widths; reused when already built)."""
    import torch

    from slimrt.artifact import verify_artifact
    from slimrt.errors import ArtifactError
    from slimrt.exporters.artifact_writer import ExportOptions, export_artifact
    from slimrt.models import create_model
    from slimrt.schema import SubnetSpec
    from slimrt.train.checkpoint import save_checkpoint
    from slimrt.train.dynamic import DynamicNet
    from slimrt.train.trainer import load_init

    weights = results / f"pretrained-seed{art['seed']}.pt"
    if not weights.is_file():
        raise SystemExit(f"{weights} is missing: run `python benchmarks/accuracy.py --mode standard --method "
                         f"pretrain --seed {art['seed']}` first")
    root = work / f"{art['id']}-{_cache_key(art, weights)}.slim"
    if root.exists():
        try:
            verify_artifact(root)  # a cached artifact is checked like any other: checksums catch a damaged one
            return root
        except ArtifactError as e:
            log.warning("cached artifact %s fails verification (%s); building it again", root.name, e)
            shutil.rmtree(root)
    work.mkdir(parents=True, exist_ok=True)
    kw = {"in_channels": 1, "num_classes": 10}
    net = DynamicNet(create_model("resnet20", **kw), torch.zeros(1, 1, 28, 28))
    load_init(net, weights, "resnet20")
    specs = [SubnetSpec(**s) for s in art["subnets"]]
    with tempfile.TemporaryDirectory(prefix="slimrt-artlat-") as tmp:
        ckpt = save_checkpoint(Path(tmp) / "model.pt", net=net, arch="resnet20", arch_kwargs=kw, subnets=specs,
                               input_shape=(1, 28, 28), mean=(0.286,), std=(0.353,), dataset="fashion-mnist",
                               config={"source": f"benchmarks/artifact_latency.py: {art['id']}"})  # fmt: skip
        export_artifact(ckpt, root, ExportOptions(force=True))  # staged and renamed: never half-written
    log.info("built %s (%d sub-nets)", root.name, len(specs))
    return root


# ------------------------------------------------------------------------------------------------- measurement

def bench_window(arts: Sequence[dict[str, Any]], roots: dict[str, Path], thread_variant: int | None,
                 window_index: int) -> dict[str, Any]:  # fmt: skip
    """One window: ``run_bench`` (``cpu`` profile, nothing saved) on every artifact, in an order rotated by
    ``window_index``; per artifact and sub-net name its p50/p95 (and at ``thread_variant`` threads)."""
    from slimrt.bench import load_device_profile, run_bench

    prof = load_device_profile("cpu")
    order = list(arts[window_index % len(arts):]) + list(arts[:window_index % len(arts)])
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    for i, art in enumerate(order):
        res = run_bench(roots[art["id"]], prof, thread_variants=(thread_variant,) if thread_variant else (),
                        save=False, progress=False)  # fmt: skip
        row: dict[str, Any] = {"subnets": {s.name: {"p50": s.p50_ms, "p95": s.p95_ms} for s in res.subnets},
                               "noisy": res.noisy}  # fmt: skip
        for tv in res.thread_variants:
            for s in tv.subnets:
                row["subnets"][s.name][f"p50_t{tv.threads}"] = s.p50_ms
                row["subnets"][s.name][f"p95_t{tv.threads}"] = s.p95_ms
        out[art["id"]] = row
        if (i + 1) % 10 == 0 or i + 1 == len(order):
            log.info("window %d: %d of %d artifacts benched (%.0f s)", window_index + 1, i + 1, len(order),
                     time.perf_counter() - t0)  # fmt: skip
    return {"finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "threads": prof.threads,
            "thread_variant": thread_variant, "seconds": round(time.perf_counter() - t0, 1), "artifacts": out}


def _served(cell: dict[str, Any], series: str) -> float | None:
    """A sub-net's p50 in ``series``: the profile's thread count, or the faster of it and the thread variant."""
    if series == "profile":
        return cell["p50"]
    alts = [v for k, v in cell.items() if k.startswith("p50_t")]
    return min([cell["p50"], *alts]) if alts else None


def combine(windows: Sequence[dict[str, Any]], full: dict[str, int], series: str = "profile",
            arts: Sequence[dict[str, Any]] = ()) -> tuple[dict[str, dict[str, dict[str, float]]], float | None]:
    """Per artifact, per architecture: median over windows of (p50 / the same bench's full-network p50 at the
    profile's thread count), times the median full-network p50 over every bench. Returns ``({artifact: {arch_key:
    {"b1_p50": ms, "ratio": r, "windows": n}}}, full_ms)``; ``series`` as in :func:`_served`. Windows name the
    sub-nets of each artifact; ``arts`` (:func:`plan_artifacts`) maps the names to architectures (a key it does not
    map is taken as an architecture key already)."""
    fk = arch_key(full)
    names = {a["id"]: {s["name"]: arch_key(s["widths"]) for s in a["subnets"]} for a in arts}
    ratios: dict[str, dict[str, list[float]]] = {}
    fulls: list[float] = []
    for w in windows:
        for aid, row in w["artifacts"].items():
            to_key = names.get(aid, {})
            cells = {to_key.get(k, k): cell for k, cell in row["subnets"].items()}
            ref = cells.get(fk, {}).get("p50")
            if not ref:
                continue
            fulls.append(ref)
            for key, cell in cells.items():
                v = _served(cell, series)
                if v is not None:
                    ratios.setdefault(aid, {}).setdefault(key, []).append(v / ref)
    if not fulls:
        return {}, None
    f = statistics.median(fulls)
    lat = {aid: {k: {"b1_p50": statistics.median(r) * f, "ratio": statistics.median(r), "windows": len(r)}
                 for k, r in per.items()} for aid, per in ratios.items()}  # fmt: skip
    return lat, f


def compare(runs: dict[str, dict[int, dict[str, Any]]], arts: Sequence[dict[str, Any]],
            lat: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:  # fmt: skip
    """The aggregate's matched tables and goals per family, each (family, seed) read with its own artifact's
    latencies against the US-Nets widths' from the US-Nets artifacts (an architecture in both, such as the full
    network, is read from each where it ran)."""
    usnet_lat: dict[str, dict[str, float]] = {}
    for a in arts:
        if a["kind"] == "usnet":
            usnet_lat.update(lat.get(a["id"], {}))
    out: dict[str, Any] = {}
    for fam in dict.fromkeys(a["family"] for a in arts if a["kind"] == "family"):
        per_seed = {}
        for a in arts:
            if a["family"] != fam:
                continue
            base = usnet_baseline(runs, a["seed"], ("usnet",))
            own = lat.get(a["id"], {})
            prog = runs[fam][a["seed"]]
            if base is None or any(arch_key(s["widths"]) not in own for s in prog["subnets"]):
                continue
            if any(arch_key(g["widths"]) not in usnet_lat for g in base["grid"]):
                continue
            per_seed[a["seed"]] = compare_seed(prog, base, own, grid_lat=usnet_lat)
        if per_seed:
            out[fam] = {"per_seed": per_seed, **summarize(per_seed)}
    return out


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"# Issue 11's goals with `slimrt bench` latency on each family's own artifact ({m['cpu']}, "
             f"{m['cores']} cores)", "",
             f"{len(result['windows'])} windows; {len(result['artifacts'])} artifacts per window. Latency: median over "
             "windows of p50 / the same bench's full-network p50, times the median full-network p50 "
             f"({_num(result['full_p50_ms'], '.3f')} ms). Command: `{result['command']}`", ""]
    for series in SERIES:
        fams = result["families"].get(series) or {}
        if not fams:
            continue
        words = ("the device profile's thread count" if series == "profile"
                 else f"per sub-net the faster of the profile's thread count and {result.get('thread_variant')} thread")
        lines += [f"## {words}", "",
                  "| family | seeds | smaller half @ latency (goal >= +1.0) | worst rank (>= -0.3) | @ MACs (>= 0) "
                  "| smallest @ latency (>= +1.0) | b1 span (>= 2.5x) | span per seed |",
                  "|---|---|---|---|---|---|---|---|"]
        for fam, v in fams.items():
            g = v["goals"]
            spans = [max(r["b1_p50"] for r in rows) / min(r["b1_p50"] for r in rows) for rows in v["per_seed"].values()]
            lines.append(f"| {fam} | {g['seeds']} | {_num(g['mean_gap_at_latency_smaller_half'])} "
                         f"| {_num(g['min_gap_at_latency'])} | {_num(g['mean_gap_at_macs'])} "
                         f"| {_num(g['gap_at_latency_smallest'])} | {g['b1_p50_span']['mean']:.2f}x "
                         f"| {' / '.join(f'{s:.2f}' for s in spans)} |")
        lines.append("")
        for fam, v in fams.items():
            lines.append(f"- {fam}: {goals_line(v['goals'])}")
        lines.append("")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------- driver

def run(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Results: artifact-latency[-<machine>].{json,md} in --results.")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the run files (default: %(default)s)")
    p.add_argument("--work-dir", type=Path, default=WORK, help="artifact cache (default: %(default)s)")
    p.add_argument("--windows", type=int, default=1, help="windows to measure now (default: %(default)s)")
    p.add_argument("--thread-variant", type=int, default=1,
                   help="also bench every sub-net at this many threads, interleaved (0: none; default: %(default)s)")
    p.add_argument("--families", default=None,
                   help="comma-separated searched families (default: every one with a run beside a usnet run)")
    p.add_argument("--build-only", action="store_true", help="export the artifacts and stop (no measurement)")
    p.add_argument("--stored", action="store_true", help="write the tables from the stored windows, measure nothing")
    a = p.parse_args(argv)
    if a.windows < 1 or a.thread_variant < 0:
        p.error("--windows must be >= 1 and --thread-variant >= 0")
    if a.build_only and a.stored:
        p.error("--build-only and --stored exclude each other")
    if not a.results.is_dir():
        p.error(f"--results {a.results}: no such folder")
    a.work_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(a.work_dir / "artifact-latency.log")  # progress in a file as on the terminal
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    runs = read_runs(a.results)
    families = None
    if a.families:
        families = [f.strip() for f in a.families.split(",") if f.strip()]
        unknown = [f for f in families if f not in SEARCHED]
        if unknown:
            p.error(f"--families: unknown {unknown}; known: {', '.join(SEARCHED)}")
    if "usnet" not in runs:
        p.error(f"{a.results} holds no usnet run file: the matched tables need US-Nets' grid")
    arts = plan_artifacts(runs, families)
    mach = machine()
    stem = series_stem(a.results, "artifact-latency", mach)
    path = a.results / f"{stem}.json"
    windows: list[dict[str, Any]] = []
    made_by = {"command": command_line("artifact_latency.py", argv), "commit": git_commit()}
    if path.is_file():
        old = json.loads(path.read_text())
        windows = list(old.get("windows", []))
        if a.stored:  # tables only: the command and commit that measured the windows stay the ones recorded
            made_by = {k: old.get(k, v) for k, v in made_by.items()}
    if not a.stored:
        roots = {}
        for i, art in enumerate(arts):
            roots[art["id"]] = build_artifact(art, a.results, a.work_dir)
            if (i + 1) % 10 == 0 or i + 1 == len(arts):
                log.info("%d of %d artifacts ready", i + 1, len(arts))
        if a.build_only:
            return None
        for _ in range(a.windows):
            windows.append(bench_window(arts, roots, a.thread_variant or None, len(windows)))
            _write(path, runs, arts, windows, mach, made_by, a.thread_variant)
    elif not windows:
        p.error(f"--stored: {path} holds no window")
    return _write(path, runs, arts, windows, mach, made_by, a.thread_variant)


def _write(path: Path, runs: dict[str, Any], arts: Sequence[dict[str, Any]], windows: list[dict[str, Any]],
           mach: dict[str, Any], made_by: dict[str, Any], thread_variant: int) -> dict[str, Any]:  # fmt: skip
    full = full_widths(runs)
    families: dict[str, Any] = {}
    lats: dict[str, Any] = {}
    full_ms = None
    for series in SERIES:
        lat, f = combine(windows, full, series, arts)
        if series == "profile":
            full_ms = f
        lats[series] = lat
        families[series] = compare(runs, arts, lat)
    result = {
        **made_by, "machine": mach, "thread_variant": thread_variant or None,
        "protocol": "slimrt bench (run_bench, cpu device profile) on one artifact per family and seed, and the "
                    "US-Nets grid in artifacts of 5-6 widths and the full network; each latency over its bench's "
                    "full-network p50",
        "artifacts": [{k: v for k, v in a.items() if k != "subnets"} | {"subnets": [s["name"] for s in a["subnets"]]}
                      for a in arts],
        "full_p50_ms": full_ms, "families": families, "latency": lats, "windows": windows,
    }
    write_results(path, result)
    atomic_write_text(path.with_suffix(".md"), markdown(result))
    log.info("wrote %s (%d windows)", path, len(windows))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("slimrt").setLevel(logging.WARNING)
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
