"""Which layout ONNX Runtime's CPU optimizer gives each architecture of the standard accuracy runs (issue 11).

    python benchmarks/ort_layout.py            # writes benchmarks/results/ort-layout-resnet20.json

For chosen US-Nets widths and every searched sub-net of seed 0, the architecture is exported from its recorded
widths, ONNX Runtime (all optimizations, as `slimrt bench` runs it) writes its optimized graph, and the node types
are counted: ``Conv`` in the NCHWc domain (blocked layout), ``FusedConv`` (plain NCHW fallback) and
``ReorderInput``/``ReorderOutput`` (layout conversions). The latency table measures each layer alone, with its own
conversions, which a whole network in the blocked layout does not pay; this file records where that holds.
No timing here: the graphs do not depend on the machine's load (they do depend on the CPU's vector width).
"""

from __future__ import annotations

import collections
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "accuracy" / "standard-resnet20"
GRID = ("w16", "w17", "w24", "w32", "w33", "w48", "w49", "w63", "w64")


def layout(widths: dict[str, int], net: Any, tmp: Path, name: str) -> dict[str, Any]:
    """Node-type counts of the ORT-optimized graph of the sub-net with ``widths``."""
    import onnx
    import onnxruntime as ort
    import torch

    from slimrt.exporters.onnx import export_module

    sub = net.extract(net.spec(widths, name=name)).eval()
    path = tmp / f"{name}.onnx"
    onnx.save(export_module(sub, torch.zeros(1, *net.input_shape), dynamic_batch=True), path)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp / f"{name}.opt.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    nodes = onnx.load(so.optimized_model_filepath).graph.node
    kinds = collections.Counter(f"{n.domain}:{n.op_type}" if n.domain else n.op_type for n in nodes)
    return {"widths": widths, "nodes": dict(sorted(kinds.items())),
            "nchwc_convs": sum(v for k, v in kinds.items() if k.endswith("nchwc:Conv")),
            "plain_convs": kinds.get("com.microsoft:FusedConv", 0) + kinds.get("Conv", 0),
            "reorders": sum(v for k, v in kinds.items() if "Reorder" in k)}  # fmt: skip


def main() -> int:
    import onnxruntime as ort
    import torch

    from slimrt.models import create_model
    from slimrt.train.dynamic import DynamicNet

    archs: dict[str, dict[str, int]] = {}
    usnet = json.loads((RUNS / "usnet-seed0.json").read_text())
    archs.update({f"usnet {g['name']}": g["widths"] for g in usnet["grid"] if g["name"] in GRID})
    for f in sorted(RUNS.glob("progressive*-seed0.json")):
        run = json.loads(f.read_text())
        archs.update({f"{run.get('variant') or f.stem[:-6]} {s['name']}": s["widths"] for s in run["subnets"]})
    torch.manual_seed(0)
    net = DynamicNet(create_model("resnet20", in_channels=1, num_classes=10), torch.zeros(1, 1, 28, 28)).eval()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="slimrt-layout-") as tmp:
        for i, (label, widths) in enumerate(archs.items()):
            out[label] = layout(widths, net, Path(tmp), f"a{i}")
            r = out[label]
            print(f"{label:40s} NCHWc convs {r['nchwc_convs']:2d}  plain convs {r['plain_convs']:2d}  "
                  f"reorders {r['reorders']:2d}", file=sys.stderr)
    write_results(RESULTS / "ort-layout-resnet20.json", {
        "command": "python benchmarks/ort_layout.py", "onnxruntime": ort.__version__, "architectures": out,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
