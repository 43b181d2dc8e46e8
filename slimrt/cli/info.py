"""``slimrt info ARTIFACT``: the manifest as a table, plus stored latency profiles and TensorRT engines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

__all__ = ["info", "ArtifactInfo", "collect_info"]


class ArtifactInfo(BaseModel):
    """What ``slimrt info --json`` prints: the manifest and every stored latency profile."""

    root: str
    manifest: dict[str, Any]
    latency_profiles: list[dict[str, Any]]


def collect_info(artifact: str | Path) -> ArtifactInfo:
    """Verify the artifact and gather its manifest and latency profiles."""
    from slimrt.artifact import load_latency_profiles, verify_artifact

    manifest = verify_artifact(artifact)
    profiles = load_latency_profiles(artifact, manifest)
    return ArtifactInfo(
        root=str(artifact),
        manifest=manifest.model_dump(mode="json"),
        latency_profiles=[
            {"fingerprint_id": p.fingerprint_id, **p.model_dump(mode="json")} for p in profiles
        ],
    )


def _fmt(v: float | int | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _widths_summary(widths: dict[str, int], full: dict[str, int]) -> str:
    """Kept share of the largest sub-net's channels: ``"61% (25-100%)"`` (mean and range over channel groups)."""
    ratios = [w / full[g] for g, w in widths.items() if full.get(g)]
    if not ratios:
        return "-"
    lo, hi, mean = min(ratios), max(ratios), sum(ratios) / len(ratios)
    return f"{mean:.0%}" if lo == hi else f"{mean:.0%} ({lo:.0%}-{hi:.0%})"


def _render(data: ArtifactInfo) -> None:
    from rich.console import Console
    from rich.table import Table

    from slimrt.schema import LatencyProfile, Manifest

    console = Console()
    m = Manifest.model_validate(data.manifest)
    inp = m.input
    console.print(
        f"[bold]{data.root}[/]  arch={m.arch or '-'}  opset={m.opset or '-'}  schema v{m.schema_version}  "
        f"input {inp.name} {inp.shape} {inp.dtype}  dynamic batch={'yes' if m.dynamic_batch else 'no'}  "
        f"producer slimrt {m.producer.slimrt}",
        highlight=False,
    )
    if m.labels:
        shown = ", ".join(m.labels[:20]) + (f", ... ({len(m.labels)} in all)" if len(m.labels) > 20 else "")
        console.print(f"labels ({len(m.labels)}): {shown}", highlight=False, markup=False)
    if inp.preprocess:
        console.print("preprocess: " + json.dumps(inp.preprocess), highlight=False, markup=False)
    full = m.subnets[0].widths
    t = Table(title="Sub-nets (largest first)")
    for col in ("sub-net", "width", "MACs", "params", "val acc %", "test acc %", "max |diff|", "torch"):
        t.add_column(col, justify="left" if col in ("sub-net", "width") else "right")
    for s in m.subnets:
        t.add_row(
            s.name, _widths_summary(s.widths, full), f"{s.macs / 1e6:.2f}M", f"{s.params / 1e3:.1f}k",
            _fmt(s.val_accuracy, ".2f"), _fmt(s.test_accuracy, ".2f"), _fmt(s.max_abs_diff, ".1e"),
            "yes" if s.torch_program else "no",
        )
    console.print(t)

    profiles = [LatencyProfile.model_validate({k: v for k, v in p.items() if k != "fingerprint_id"})
                for p in data.latency_profiles]
    if profiles:
        pt = Table(title="Stored latency profiles")
        for col in ("fingerprint", "device", "backend", "threads", "batch", "precision", "created", "noisy"):
            pt.add_column(col)
        for p in profiles:
            fp = p.fingerprint
            pt.add_row(p.fingerprint_id, p.device, fp.backend, "auto" if fp.threads is None else str(fp.threads),
                       str(p.batch_size), fp.precision, p.created[:10], "yes" if p.noisy else "no")
        console.print(pt)
        lt = Table(title="p95 latency (ms) per stored profile")
        lt.add_column("sub-net")
        for p in profiles:
            lt.add_column(p.fingerprint_id[:8], justify="right")
        for s in m.subnets:
            cells = []
            for p in profiles:
                known = {x.name: x for x in p.subnets}
                cells.append(_fmt(known[s.name].p95_ms, ".3f") if s.name in known else "-")
            lt.add_row(s.name, *cells)
        console.print(lt)
    else:
        console.print("No stored latency profiles (run `slimrt bench ARTIFACT --device cpu`).")
    for es in m.engines:
        console.print(
            f"TensorRT engines [{es.device_tag}]: {len(es.engines)} engine(s), TensorRT {es.tensorrt_version}, "
            f"{es.gpu_name}, {es.precision}", highlight=False,
        )


def info(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory (holds manifest.json).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest and stored profiles as JSON.")] = False,
) -> None:
    """Show an artifact: sub-nets, widths, MACs, accuracy, export error, stored latency profiles, engines."""
    data = collect_info(artifact)
    if as_json:
        typer.echo(json.dumps(data.model_dump(mode="json"), indent=2))
    else:
        _render(data)
