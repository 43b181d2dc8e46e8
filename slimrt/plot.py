"""Accuracy-latency and accuracy-MACs plots (matplotlib, headless Agg backend, imported lazily)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slimrt.selection import pareto_front

__all__ = ["pareto_front", "plot_accuracy_vs_latency", "plot_accuracy_vs_macs"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: str | Path) -> Path:
    """Save ``fig`` to ``out`` through a temporary file in the same folder, then rename."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix or ".png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
