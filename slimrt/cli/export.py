"""``slimrt export model.pt -o resnet20.slim``: one validated artifact (one ONNX per sub-net, weights stored once)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slimrt.errors import ConfigError

__all__ = ["export"]


def _subnet_names(value: str | None) -> list[str] | None:
    if value is None or value.strip().lower() == "all":
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def export(
    model: Annotated[Path | None, typer.Argument(help="Checkpoint written by `slimrt train` (model.pt).")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Artifact directory to create.")] = None,
    subnets: Annotated[str | None, typer.Option(help="Sub-nets to export: NAME,NAME or 'all'.")] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's default, recorded).")] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Make the batch dimension symbolic.")] = False,
    atol: Annotated[float, typer.Option(help="Max abs difference allowed between ONNX Runtime and PyTorch.")] = 1e-4,
    allow_mismatch: Annotated[
        bool, typer.Option("--allow-mismatch", help="Keep the artifact even if validation exceeds --atol.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing artifact at --out.")] = False,
    torch_programs: Annotated[
        bool, typer.Option("--torch", help="Also write each sub-net as a torch.export program (torch/<name>.pt2).")
    ] = False,
    tensorrt: Annotated[bool, typer.Option("--tensorrt", help="Also build TensorRT engines on this GPU.")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="Build TensorRT engines in fp16.")] = False,
    engines_only: Annotated[
        Path | None, typer.Option("--engines-only", help="Add TensorRT engines to this existing artifact.")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset folder for real validation inputs.")] = None,
    arch: Annotated[
        str | None, typer.Option(help="Architecture override (package.module:factory you trust).")
    ] = None,
    validation_samples: Annotated[int, typer.Option(help="Real test images used for validation.")] = 256,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Export a trained dynamic network to a deployable artifact and validate every sub-net against PyTorch."""
    from pydantic import ValidationError
    from rich.console import Console

    from slimrt.exporters.artifact_writer import ExportOptions, add_engines, export_artifact

    err = Console(stderr=True)
    try:
        options = ExportOptions(
            subnets=_subnet_names(subnets), opset=opset, dynamic_batch=dynamic_batch, atol=atol,
            allow_mismatch=allow_mismatch, force=force, torch_programs=torch_programs, tensorrt=tensorrt, fp16=fp16,
            data=data, arch=arch, validation_samples=validation_samples,
        )  # fmt: skip
    except ValidationError as e:  # checked before any work, reported as the option the user typed
        first = e.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "option"
        raise ConfigError(f"{flag} {first.get('input')!r}: {first['msg'].lower()}") from None
    if engines_only is not None:
        if not tensorrt:
            raise ConfigError("--engines-only adds TensorRT engines to an artifact; add --tensorrt")
        es = add_engines(engines_only, options, console=None if json_out else err)
        if json_out:
            typer.echo(es.model_dump_json(indent=2))
        else:
            Console().print(f"[green]ok[/]: {len(es.engines)} {es.precision} engine(s) in {engines_only}/engines/"
                            f"{es.device_tag} (TensorRT {es.tensorrt_version}, {es.gpu_name})")
        return
    if model is None or out is None:
        raise ConfigError("usage: slimrt export MODEL.pt -o ARTIFACT (or --engines-only ARTIFACT --tensorrt)")

    result = export_artifact(model, out, options, console=None if json_out else err)
    if json_out:
        typer.echo(result.model_dump_json(indent=2))
        return
    from rich.table import Table

    table = Table(title=f"slimrt export -> {result.artifact}")
    for col, just in (("sub-net", "left"), ("MMACs", "right"), ("params", "right"), ("test acc %", "right"),
                      ("onnx bytes", "right"), ("max abs diff", "right"), ("status", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for s in result.subnets:
        acc = "" if s.test_accuracy is None else f"{s.test_accuracy:.2f}"
        status = "[green]ok[/]" if s.ok else "[red]over atol[/]"
        table.add_row(s.name, f"{s.macs / 1e6:.2f}", f"{s.params:,}", acc, f"{s.onnx_bytes:,}",
                      f"{s.max_abs_diff:.2e}", status)
    console = Console()
    console.print(table)
    console.print(
        f"weights {result.weights_bytes:,} B stored once; artifact {result.total_bytes:,} B; opset {result.opset}; "
        f"validated on {result.validation_inputs} + random inputs (atol {result.atol:g}); {result.seconds:.1f} s"
    )
