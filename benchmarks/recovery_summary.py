"""Summarise repeated runs of ``benchmarks/runtime.py --sections recovery`` (one JSON file each).

    python benchmarks/recovery_summary.py benchmarks/results/recovery-backoff-intel/new-*.json
    python benchmarks/recovery_summary.py --json benchmarks/results/recovery-backoff-intel/old-*.json

Pools the storm trials and the control trials of every file: how many cleared (every estimate <= 1.1 to the end of
the post-storm calls) within 200 calls, the median calls to the first clear, the up-patience after the storm, and the
share of post-storm calls that served a sub-net as accurate as the quiet profile's choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def summarise(paths: list[Path]) -> dict[str, Any]:
    storms: list[dict[str, Any]] = []
    controls: list[dict[str, Any]] = []
    settings = set()
    for p in paths:
        try:
            d = json.loads(p.read_text())
            r = d["sections"]["recovery"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"error: {p} is not a recovery result ({type(e).__name__}: {e})") from None
        settings.add(str(r.get("clear_slowdown", "before clear_slowdown")))
        for t in r["trials"]:
            (storms if t["busy_procs"] else controls).append(t)

    def part(ts: list[dict[str, Any]]) -> dict[str, Any]:
        clear = [t["calls_to_clear"] for t in ts]
        out: dict[str, Any] = {
            "trials": len(ts),
            "cleared_within_200": sum(c is not None and c <= 200 for c in clear),
            "calls_to_clear": clear,
            "median_calls_to_first_clear": float(np.median([t["calls_to_first_clear"] or 10**9 for t in ts])),
        }
        share = [t["quiet_choice_share"] for t in ts if "quiet_choice_share" in t]
        if share:
            out["quiet_choice_share_mean"] = float(np.mean(share))
            out["quiet_choice_share_last_300_mean"] = float(np.mean([t["quiet_choice_share_last_300"] for t in ts]))
            out["calls_to_quiet_choice"] = [t["calls_to_quiet_choice"] for t in ts]
        pat = [t["up_patience_after_storm"] for t in ts if "up_patience_after_storm" in t]
        if pat:
            out["up_patience_after_storm"] = pat
        return out

    return {"files": [str(p) for p in paths], "clear_slowdown": sorted(settings), "storm": part(storms),
            "control": part(controls)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path, help="recovery result files (runtime.py --out)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = ap.parse_args(argv)
    s = summarise(a.files)
    if a.json:
        print(json.dumps(s, indent=1))
        return 0
    print(f"{len(a.files)} file(s), clear_slowdown {', '.join(s['clear_slowdown'])}")
    for k in ("storm", "control"):
        v = s[k]
        line = (f"{k:8s} {v['trials']} trials: cleared within 200 calls {v['cleared_within_200']}/{v['trials']}, "
                f"median calls to first clear {v['median_calls_to_first_clear']:.0f}")
        if "quiet_choice_share_mean" in v:
            line += (f", calls at the quiet choice's accuracy {100 * v['quiet_choice_share_mean']:.0f}% "
                     f"(last 300: {100 * v['quiet_choice_share_last_300_mean']:.0f}%)")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
