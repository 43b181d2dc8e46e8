"""What the benchmark scripts share: inputs, timing statistics, memory, subprocess workers and writing results.

Imported by the scripts as ``from _common import ...`` (a script's folder is on ``sys.path``); uses only public
functions of slimrt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slimrt.io import atomic_write_text, dir_bytes

__all__ = ["random_input", "median_us", "rss_bytes", "run_json_worker", "write_results", "dir_bytes", "command_line"]


def random_unit_grid_widths(net: Any, n: int, seed: int = 0) -> list[dict[str, int]]:
    """``n`` random sub-nets of a DynamicNet ``net``: every prunable group's width uniform on its unit grid (groups of
    8 channels, narrow groups in 4 units, the search's standard grid), the same ones for the same ``seed``."""
    from slimrt.train.methods.progressive import unit_size

    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n):
        widths = {}
        for g in net.prunable_groups:
            u = unit_size(g.channels, 8, 4)
            widths[g.name] = int(u * rng.integers(1, g.channels // u + 1))
        draws.append(widths)
    return draws


def random_input(manifest: Any, batch: int, seed: int = 0) -> np.ndarray:
    """A standard-normal input of the manifest's input shape (symbolic dims as 1) and dtype, ``batch`` rows."""
    shape = [batch, *(d if isinstance(d, int) else 1 for d in manifest.input.shape[1:])]
    return np.random.default_rng(seed).standard_normal(shape).astype(np.dtype(manifest.input.dtype))


def median_us(ns: Sequence[int] | np.ndarray) -> float:
    """Median of nanosecond timings, in microseconds."""
    return float(np.median(np.asarray(ns)) / 1e3)


def rss_bytes() -> int:
    """Resident memory of this process (psutil when installed, else /proc/self/statm)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_json_worker(args: Sequence[str], timeout: float = 300) -> Any:
    """Run ``python ARGS...`` in a fresh process and parse the JSON on the last line of its stdout."""
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def write_results(path: Path, result: dict[str, Any]) -> Path:
    """Write a results file (indented JSON + newline) atomically, so an interrupted run keeps the previous one."""
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    return path


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that produced a results file, as recorded in it."""
    return f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
