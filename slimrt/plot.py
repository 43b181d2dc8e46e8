"""Accuracy-latency, accuracy-MACs and bench plots (matplotlib, headless Agg backend, imported lazily)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slimrt.errors import SlimrtError
from slimrt.io import atomic_write
from slimrt.selection import pareto_front

if TYPE_CHECKING:
    from slimrt.bench import BenchResult

__all__ = ["pareto_front", "plot_accuracy_vs_latency", "plot_accuracy_vs_macs", "plot_bench"]

log = logging.getLogger(__name__)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: str | Path) -> Path:
    """Save ``fig`` to ``out`` atomically (parent folders created)."""
    out = Path(out)
    with atomic_write(out) as tmp:
        fig.savefig(tmp, format=out.suffix[1:] or "png", dpi=150, bbox_inches="tight")
    return out


def plot_accuracy_vs_latency(
    names: Sequence[str],
    latency_ms: Sequence[float],
    accuracy: Sequence[float],
    out: str | Path,
    *,
    title: str | None = None,
    xlabel: str = "p95 latency (ms)",
) -> Path:
    """Scatter accuracy against latency, label every sub-net and draw the Pareto front.

    Args:
        names: sub-net names (point labels).
        latency_ms: latency of each sub-net (e.g. its p95).
        accuracy: accuracy of each sub-net in percent.
        out: PNG path to write (parent folders are created).
        title: figure title.
        xlabel: x-axis label.

    Returns:
        The written path.
    """
    if not (len(names) == len(latency_ms) == len(accuracy)) or not names:
        raise ValueError("names, latency_ms and accuracy must be non-empty and of equal length")
    plt = _pyplot()
    front = pareto_front(latency_ms, accuracy)
    on_front = set(front)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        others = [i for i in range(len(names)) if i not in on_front]
        if others:
            ax.scatter([latency_ms[i] for i in others], [accuracy[i] for i in others], color="0.6", s=30,
                       label="dominated", zorder=2)
        ax.plot([latency_ms[i] for i in front], [accuracy[i] for i in front], "-o", color="tab:blue", lw=2, ms=7,
                label="Pareto front", zorder=3)
        for i, name in enumerate(names):
            ax.annotate(f"{name}\n{latency_ms[i]:.3g} ms, {accuracy[i]:.2f}%", (latency_ms[i], accuracy[i]),
                        textcoords="offset points", xytext=(6, -4), fontsize=7, va="top")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title or "Accuracy vs latency (up and left is better)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)  # the front rises to the right: upper left stays empty
        ax.margins(x=0.2, y=0.15)
        return _save(fig, out)
    finally:
        plt.close(fig)


def plot_accuracy_vs_macs(methods: Mapping[str, Sequence[Mapping[str, Any]]], out: str | Path, *,
                          title: str | None = None) -> Path:
    """One line per method of accuracy against MACs (log x-axis), for comparing training/search methods.

    Args:
        methods: method name -> points, each a mapping with ``"macs"`` and ``"accuracy"`` (percent; ``"test_accuracy"``
            is accepted too) and optionally ``"name"`` (a label drawn next to the point).
        out: PNG path to write.
        title: figure title.

    Returns:
        The written path.
    """
    if not methods:
        raise ValueError("methods must hold at least one method")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        for method, points in methods.items():
            pts = []
            for p in points:
                acc = p.get("accuracy", p.get("test_accuracy"))
                if acc is None or p.get("macs") is None:
                    raise ValueError(f"method {method!r}: every point needs 'macs' and 'accuracy', got {dict(p)}")
                pts.append((float(p["macs"]), float(acc), p.get("name")))
            pts.sort()
            ax.plot([m for m, _, _ in pts], [a for _, a, _ in pts], "-o", ms=5, label=method)
            for m, a, name in pts:
                if name:
                    ax.annotate(str(name), (m, a), textcoords="offset points", xytext=(4, 4), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("MACs per image")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title or "Accuracy vs MACs")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        return _save(fig, out)
    finally:
        plt.close(fig)


def plot_bench(result: BenchResult, out: str | Path) -> Path:
    """Accuracy (test, else validation) vs p95 latency of the benched sub-nets, Pareto front highlighted.

    Raises:
        SlimrtError: no sub-net has an accuracy in the manifest.
    """
    pts = [(s.name, s.p95_ms, s.test_accuracy if s.test_accuracy is not None else s.val_accuracy)
           for s in result.subnets]
    have = [(n, lat, acc) for n, lat, acc in pts if acc is not None]
    if not have:
        raise SlimrtError("cannot plot accuracy vs latency: no sub-net of the artifact has an accuracy in its manifest")
    if len(have) < len(pts):
        log.warning("plot leaves out sub-nets without accuracy: %s", [n for n, _, a in pts if a is None])
    fp = result.fingerprint
    where = fp.gpu_name or fp.cpu_model
    title = (f"{Path(result.artifact).name}: accuracy vs p95 latency "
             f"({result.backend}, {where}, batch {result.batch_size})")
    return plot_accuracy_vs_latency([n for n, _, _ in have], [lat for _, lat, _ in have],
                                    [float(a) for _, _, a in have], out, title=title)
