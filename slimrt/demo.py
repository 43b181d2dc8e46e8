"""``make demo``: the whole pipeline on Fashion-MNIST in a few minutes on 2 CPU cores.

train (progressive search, short schedule) -> export -> bench on this CPU -> SlimRuntime driven through a sequence
of latency budgets and a burst of background CPU load, printing which sub-net served each phase.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from slimrt.runtime.runtime import BudgetInfeasibleWarning

__all__ = ["Phase", "PhaseResult", "plan_phases", "run_phase", "background_load", "main", "DEMO_SEARCH"]

DEMO_SEARCH = {"min_macs": 0.25, "macs_step": 0.15, "noise_steps": 20, "finetune_steps": 20, "threshold": 2.0,
               "calib_batches": 8}  # fmt: skip
"""The demo's short search schedule (every step count given, so it does not depend on the data size)."""


class Phase(BaseModel):
    """One stretch of the demo: a budget, optional background load, a duration."""

    title: str
    short: str = ""  # the phase's name in the summary table
    budget_ms: float
    load: int = 0  # busy background processes
    seconds: float = 2.0


class PhaseResult(BaseModel):
    title: str
    short: str = ""
    budget_ms: float
    load: int
    calls: int
    served: dict[str, int]
    p50_ms: float
    p95_ms: float
    within_budget: float  # share of calls whose end-to-end latency met the budget
    accuracy: float  # top-1 accuracy of the served predictions on the images used, percent
    expected_accuracy: float  # mean test accuracy (manifest) of the sub-nets that served, percent
    switches: int
    infeasible: int
    slowdown: float


@contextlib.contextmanager
def background_load(processes: int) -> Iterator[None]:
    """Run ``processes`` busy-looping Python processes for the duration of the block."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL)
        for _ in range(processes)
    ]
    try:
        time.sleep(0.2 if procs else 0)  # let the scheduler feel them
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _just_above(p95_ms: Sequence[float], i: int) -> float:
    """A budget for sub-net ``i``: half-way to the next slower sub-net, and at least 20% above its own p95 (calls
    in a busy app loop run a little slower than the benchmark's, and the runtime notices; when two sub-nets are
    closer than that, the faster of the larger ones may serve)."""
    if i == 0:
        return 1.5 * p95_ms[0]
    above = [p for p in p95_ms[:i] if p > p95_ms[i]]
    half_way = (p95_ms[i] + min(above)) / 2 if above else 0.0
    return max(half_way, 1.2 * p95_ms[i])


def plan_phases(p95_ms: Sequence[float], seconds: float = 2.0, load: int = 2) -> list[Phase]:
    """Budgets derived from the sub-nets' measured p95 latencies (largest sub-net first)."""
    small = p95_ms[-1]
    mid = len(p95_ms) // 2
    roomy = _just_above(p95_ms, 0)
    return [
        Phase(title="roomy budget", short="roomy", budget_ms=roomy, seconds=seconds),
        Phase(title="budget cut to a mid-size sub-net", short="mid", budget_ms=_just_above(p95_ms, mid),
              seconds=seconds),
        Phase(title="tight budget", short="tight", budget_ms=_just_above(p95_ms, len(p95_ms) - 1), seconds=seconds),
        Phase(title="roomy budget again", short="roomy", budget_ms=roomy, seconds=seconds),
        Phase(title=f"roomy budget + {load} busy background processes", short=f"roomy + load x{load}",
              budget_ms=roomy, load=load, seconds=seconds * 1.5),
        Phase(title="background load gone", short="load gone", budget_ms=roomy, seconds=seconds * 1.5),
        Phase(title="impossible budget (below the fastest sub-net)", short="impossible", budget_ms=0.3 * small,
              seconds=seconds / 2),
    ]


def run_phase(rt, phase: Phase, images: np.ndarray, labels: np.ndarray) -> PhaseResult:
    """Call ``rt`` one image at a time for ``phase.seconds`` at ``phase.budget_ms``; measure what happened."""
    rt.budget_ms = phase.budget_ms
    rt.reset_stats()
    acc_by_name = {e.name: e.test_accuracy for e in rt.manifest.subnets}
    served: list[str] = []
    lat: list[float] = []
    correct = 0
    n = len(images)
    with background_load(phase.load), warnings.catch_warnings():
        # A budget no sub-net meets is counted (stats().budget_infeasible) and shown in the table instead.
        warnings.simplefilter("ignore", BudgetInfeasibleWarning)
        t_end = time.perf_counter() + phase.seconds
        i = 0
        while time.perf_counter() < t_end:
            x = images[i % n : i % n + 1]
            name = rt.active_name
            t0 = time.perf_counter_ns()
            y = rt(x)
            lat.append((time.perf_counter_ns() - t0) * 1e-6)
            served.append(name)
            correct += int(np.argmax(y[0]) == labels[i % n])
            i += 1
    stats = rt.stats()
    lat_a = np.asarray(lat)
    counts = Counter(served)
    exp = [acc_by_name.get(s) or 0.0 for s in served]
    return PhaseResult(
        title=phase.title,
        short=phase.short or phase.title,
        budget_ms=phase.budget_ms,
        load=phase.load,
        calls=len(lat),
        served=dict(counts.most_common()),
        p50_ms=float(np.percentile(lat_a, 50)),
        p95_ms=float(np.percentile(lat_a, 95)),
        within_budget=float((lat_a <= phase.budget_ms).mean() * 100),
        accuracy=100.0 * correct / max(1, len(lat)),
        expected_accuracy=float(np.mean(exp)),
        switches=stats.switches,
        infeasible=stats.budget_infeasible,
        slowdown=stats.slowdown,
    )


def _served_text(r: PhaseResult) -> str:
    return ", ".join(f"{k} {100 * v / r.calls:.0f}%" if 100 * v >= 0.5 * r.calls else f"{k} <1%"
                     for k, v in r.served.items())


def _phase_table(results: list[PhaseResult]) -> Table:
    t = Table(title="SlimRuntime through budgets and background load (batch 1, real test images)")
    for col in ("phase", "budget ms", "served (share of calls)", "p50 ms", "p95 ms", "in budget", "accuracy",
                "switches", "infeasible"):
        t.add_column(col, justify="left" if col in ("phase", "served (share of calls)") else "right")
    for r in results:
        t.add_row(r.short, f"{r.budget_ms:.3f}", _served_text(r), f"{r.p50_ms:.3f}", f"{r.p95_ms:.3f}",
                  f"{r.within_budget:.1f}%", f"{r.accuracy:.1f}%", str(r.switches), str(r.infeasible))
    return t


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slimrt.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="demo-out", help="folder for model.pt, the artifact and the plots")
    ap.add_argument("--data", default=None, help="folder holding the Fashion-MNIST files")
    ap.add_argument("--limit-train", type=int, default=12000, help="training images used (short schedule)")
    ap.add_argument("--pretrain-epochs", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2, help="final joint fine-tuning epochs")
    ap.add_argument("--subnets", type=int, default=4)
    ap.add_argument("--phase-seconds", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="skip training: use this model.pt from `slimrt train`")
    args = ap.parse_args(argv)

    from slimrt import SlimRuntime
    from slimrt.bench import load_device_profile, run_bench
    from slimrt.exporters.artifact_writer import ExportOptions, export_artifact
    from slimrt.plot import plot_bench
    from slimrt.train.config import SearchConfig
    from slimrt.train.data import load_dataset
    from slimrt.train.trainer import run_training

    console = Console(width=None if sys.stdout.isatty() else 110)  # logs and CI: wide enough for the tables
    import logging

    from rich.logging import RichHandler

    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False, show_level=False)])
    logging.getLogger("slimrt.train").setLevel(logging.INFO)  # one line per search step, also in plain logs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def step(n: int, title: str, what: str) -> None:
        console.rule(f"[bold]Step {n}/5: {title}")
        console.print(what, highlight=False)

    # ------------------------------------------------------------------ 1. train
    step(1, "train", "Pre-train a ResNet-20 on Fashion-MNIST, then progressive sub-net search: rank channel units by "
         "trainable noise, remove the least important ones step by step, fine-tune only when accuracy drops too "
         "far, re-select the best K sub-nets and fine-tune them jointly (short demo schedule).")
    if args.model is not None:
        from slimrt.train import load_checkpoint

        model_path = Path(args.model)
        ck = load_checkpoint(model_path)
        console.print(f"using {model_path}: {len(ck.subnets)} sub-nets ({', '.join(s.name for s in ck.subnets)})",
                      highlight=False)
    else:
        cfg = SearchConfig(
            arch="resnet20", dataset="fashion-mnist", data_dir=args.data, method="progressive",
            limit_train=args.limit_train, val_size=2000, pretrain_epochs=args.pretrain_epochs, epochs=args.epochs,
            subnets=args.subnets, **DEMO_SEARCH, seed=args.seed, out=str(out / "model.pt"),
        )  # fmt: skip
        from slimrt.progress import make_progress

        with make_progress(console=console) as progress:  # plain periodic lines when stdout is a log file
            trained = run_training(cfg, progress=progress)
        t = Table(title=f"Trained sub-nets ({trained.seconds:.0f} s)")
        for col in ("sub-net", "MACs", "% of full", "params", "val acc", "test acc"):
            t.add_column(col, justify="right" if col != "sub-net" else "left")
        for s in trained.subnets:
            t.add_row(s.name, f"{s.macs / 1e6:.2f}M", f"{100 * s.macs / trained.full_macs:.0f}%", f"{s.params:,}",
                      f"{s.val_accuracy:.2f}%", f"{s.test_accuracy:.2f}%")
        console.print(t)
        cands = trained.report.get("candidates") or []
        if cands:
            console.print(f"pre-trained full network: {cands[0]['val_accuracy']:.2f}% validation accuracy; the search "
                          f"visited {len(cands)} nested candidates and fine-tuned {trained.report.get('finetunes')} "
                          f"times (only when a step cost more than {cfg.threshold:g} points)", highlight=False)
        model_path = Path(cfg.out)

    # ------------------------------------------------------------------ 2. export
    step(2, "export", "Write one ONNX model per sub-net over one shared weights file, validate each against "
         "PyTorch, checksum everything.")
    artifact = out / "resnet20.slim"
    exported = export_artifact(model_path, artifact, ExportOptions(force=True, data=args.data), console=console)
    console.print(f"artifact: {artifact} ({exported.total_bytes / 1e6:.2f} MB; weights "
                  f"{exported.weights_bytes / 1e6:.2f} MB stored once for {len(exported.subnets)} sub-nets)",
                  highlight=False)

    # ------------------------------------------------------------------ 3. bench
    step(3, "bench", "Measure every sub-net's latency on this CPU (profiles/cpu.toml), store the profile in the "
         "artifact, plot accuracy vs latency.")
    bench = run_bench(artifact, load_device_profile("cpu"), progress=True)
    plot = plot_bench(bench, out / "accuracy-vs-latency.png")
    t = Table(title=f"Latency on this CPU ({bench.fingerprint.cpu_model}, batch {bench.batch_size})")
    for col in ("sub-net", "MACs", "test acc", "p50 ms", "p95 ms", "p99 ms", "speed-up"):
        t.add_column(col, justify="right" if col != "sub-net" else "left")
    for s in bench.subnets:
        t.add_row(s.name, f"{s.macs / 1e6:.2f}M", f"{s.test_accuracy:.2f}%", f"{s.p50_ms:.3f}", f"{s.p95_ms:.3f}",
                  f"{s.p99_ms:.3f}", f"{s.speedup_p50:.2f}x")
    console.print(t)

    # ------------------------------------------------------------------ 4. run
    step(4, "run", "SlimRuntime serves each call with the most accurate sub-net whose predicted p95 latency fits "
         "the budget; it follows budget changes at the next call and scales its predictions by the slowdown it "
         "observes, so it steps down under background load and back up when the load is gone.")
    data = load_dataset("fashion-mnist", root=args.data)
    images = data.x_test[:2000].numpy().astype(np.float32)
    labels = data.y_test[:2000].numpy()
    results: list[PhaseResult] = []
    with SlimRuntime(artifact, budget_ms=1e3, device="cpu") as rt:
        console.print(f"latency knowledge: [bold]{rt.latency_source}[/] (the profile `bench` stored; "
                      "nothing re-measured)")
        phases = plan_phases([s.latency.p95_ms for s in rt.subnets], seconds=args.phase_seconds)
        for ph in phases:
            r = run_phase(rt, ph, images, labels)
            results.append(r)
            console.print(f"[bold]{r.title}[/] (budget {r.budget_ms:.3f} ms): served {_served_text(r)}; "
                          f"p95 {r.p95_ms:.3f} ms, {r.within_budget:.1f}% in budget, accuracy {r.accuracy:.1f}%, "
                          f"slowdown x{r.slowdown:.2f}", highlight=False)

    # ------------------------------------------------------------------ 5. summary
    step(5, "summary", "")
    console.print(_phase_table(results))
    console.print(Panel.fit(
        f"model:    {model_path}\nartifact: {artifact}  (slimrt info {artifact})\nplot:     {plot}\n"
        f"total:    {time.perf_counter() - t_start:.0f} s",
        title="slimrt demo done",
    ))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
