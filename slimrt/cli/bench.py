"""``slimrt bench ARTIFACT --device cpu|cuda|jetson``: measure every sub-net's latency here and store it."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from slimrt.bench import BenchResult

__all__ = ["bench", "render_bench"]


class DeviceName(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    jetson = "jetson"


def _acc(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def render_bench(result: BenchResult) -> None:
    """Print a bench result as a rich table with its fingerprint, checks and warnings."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    fp = result.fingerprint
    where = fp.gpu_name or f"{fp.cpu_model} ({fp.cpu_cores} cores)"
    t = Table(
        title=f"Latency on {result.device}: {where}, {result.backend} [{', '.join(result.providers)}], "
        f"batch {result.batch_size}, threads {result.threads or 'auto'}"
    )
    predicted = any(s.predicted_latency_ms is not None for s in result.subnets)
    cols = ["sub-net", "MACs", "params", "test acc %", "p50 ms", "p95 ms", "p99 ms", "cv", "speed-up"]
    cols += ["predicted ms", "pred. error"] if predicted else []
    for col in cols:
        t.add_column(col, justify="left" if col == "sub-net" else "right")
    for s in result.subnets:
        acc = s.test_accuracy if s.test_accuracy is not None else s.val_accuracy
        cv = f"[yellow]{s.cv:.2f}[/]" if s.noisy else f"{s.cv:.2f}"
        row = [s.name, f"{s.macs / 1e6:.2f}M", f"{s.params / 1e3:.1f}k", _acc(acc), f"{s.p50_ms:.3f}",
               f"{s.p95_ms:.3f}", f"{s.p99_ms:.3f}", cv, f"{s.speedup_p50:.2f}x"]
        if predicted:
            row += ["-", "-"] if s.predicted_latency_ms is None or s.predicted_error is None else [
                f"{s.predicted_latency_ms:.3f}", f"{100 * s.predicted_error:+.1f}%"]
        t.add_row(*row)
    console.print(t)
    for v in result.thread_variants:
        row = ", ".join(f"{s.name} {s.p50_ms:.3f}/{s.p95_ms:.3f}" for s in v.subnets)
        console.print(f"threads {v.threads} (p50/p95 ms): {row}", highlight=False)
    for c in result.checks:
        mark = "[green]ok[/]" if c.ok else "[yellow]warn[/]"
        console.print(f"check {c.name}: {mark} {c.detail}", highlight=False)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    runs = result.subnets[0].runs if result.subnets else 0
    console.print(f"fingerprint {result.fingerprint_id}; {runs} timed rounds per sub-net (interleaved round-robin)",
                  highlight=False)
    if result.saved_to:
        console.print(f"saved latency profile: {Path(result.artifact) / result.saved_to}", highlight=False)
    else:
        console.print("latency profile not saved (--no-save)")


def _check_output_file(flag: str, path: Path) -> None:
    from slimrt.errors import ConfigError
    from slimrt.io import check_writable_parent

    if path.is_dir():
        example = path / ("bench.json" if flag == "--json" else "bench.png")
        raise ConfigError(f"{flag} {path} is a directory; give a file name, e.g. {example}")
    check_writable_parent(path, f"{flag} {path}")


def _check_outputs(artifact: Path, json_out: Path | None, plot: Path | None, save: bool) -> None:
    """Every output of ``bench`` checked before the (long) measurement starts."""
    import importlib.util

    from slimrt.errors import ConfigError

    if json_out is not None:
        _check_output_file("--out", json_out)
    if plot is not None:
        _check_output_file("--plot", plot)
        if importlib.util.find_spec("matplotlib") is None:
            raise ConfigError("--plot needs matplotlib: pip install 'slimrt[plot]'")
    if save:
        from slimrt.artifact import check_writable

        check_writable(artifact)


def _thread_list(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected a comma list of thread counts such as 1 or 1,4, got {text!r}",
                                 param_hint="--thread-variants") from None


def bench(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory (from `slimrt export`).")],
    device: Annotated[DeviceName, typer.Option(help="Device profile shipped with slimrt (profiles/NAME.toml).")] = (
        DeviceName.cpu
    ),
    device_profile: Annotated[
        Path | None,
        typer.Option("--device-profile", "--profile", help="Your own device profile TOML (overrides --device).",
                     dir_okay=False),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size (default: profile's first).")] = None,
    runs: Annotated[int | None, typer.Option(min=1, help="Timed rounds per sub-net (default: profile's).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Intra-op threads (default: profile's / backend's).")] = (
        None
    ),
    thread_variants: Annotated[
        str | None,
        typer.Option("--thread-variants", help="Also measure every sub-net at these thread counts (CPU; comma list, "
                     "e.g. 1), for SlimRuntime(threads=(THREADS, *VARIANTS))."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (no table, no progress).")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the result as JSON to this file.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write an accuracy vs p95 latency plot (PNG) here.")] = None,
    no_save: Annotated[bool, typer.Option("--no-save", help="Do not store the profile in the artifact.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no table.")] = False,
) -> None:
    """Measure every sub-net's latency on this device and store the profile in the artifact for SlimRuntime."""
    from slimrt.bench import load_device_profile, run_bench

    prof = load_device_profile(device_profile if device_profile is not None else device.value)
    _check_outputs(artifact, out, plot, save=not no_save)  # before measuring, not after
    variants = _thread_list(thread_variants)
    result = run_bench(artifact, prof, batch_size=batch_size, runs=runs, threads=threads, thread_variants=variants,
                       save=not no_save, progress=not (quiet or as_json))
    text = json.dumps(result.to_json_dict(), indent=2) + "\n"
    if out is not None:
        from slimrt.io import atomic_write_text

        atomic_write_text(out, text)
    if plot is not None:
        from slimrt.plot import plot_bench

        plot_bench(result, plot)
    if as_json:
        typer.echo(text, nl=False)
    elif not quiet:
        render_bench(result)
        for written in (out, plot):
            if written is not None:
                typer.echo(f"wrote {written}")
