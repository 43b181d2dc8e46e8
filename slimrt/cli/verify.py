"""``slimrt verify ARTIFACT``: check the manifest and every file's size and sha256."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["verify"]


def verify(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory (holds manifest.json).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
) -> None:
    """Check every checksum of an artifact; exit 1 naming the first bad file."""
    from rich.console import Console
    from rich.table import Table

    from slimrt.artifact import check_artifact

    report = check_artifact(artifact)
    console = Console()
    if json_out:
        typer.echo(report.model_dump_json(indent=2))
    else:
        table = Table(title=f"slimrt verify {artifact}")
        table.add_column("file")
        table.add_column("kind")
        table.add_column("bytes", justify="right")
        table.add_column("status")
        for f in report.files:
            status = "[green]ok[/]" if f.ok else f"[red]{f.error}[/]"
            table.add_row(f.path, f.kind, "" if f.bytes is None else f"{f.bytes:,}", status)
        console.print(table)
        if report.ok:
            console.print(
                f"[green]ok[/]: {len(report.files)} files verified, "
                f"{len(report.subnets)} sub-nets ({', '.join(report.subnets)})"
            )
        else:
            typer.echo(f"error: {' '.join(str(report.error).split())}", err=True)  # one line, never wrapped
    if not report.ok:
        raise typer.Exit(1)
