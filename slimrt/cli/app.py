"""The ``slimrt`` command: wires one sub-command per module; heavy imports happen inside each command."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.markup import escape

from slimrt.cli import bench, export, info, schema_cmd, train, verify
from slimrt.errors import SlimrtError

app = typer.Typer(
    name="slimrt",
    help=(
        "Train once, ship one artifact, run the most accurate nested sub-net that meets your latency budget.\n\n"
        "Pipeline: slimrt train -> slimrt export -> slimrt bench -> SlimRuntime(artifact, budget_ms=...)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("train")(train.train)
app.command("export")(export.export)
app.command("bench")(bench.bench)
app.command("info")(info.info)
app.command("verify")(verify.verify)
app.command("schema")(schema_cmd.schema)

err_console = Console(stderr=True)


def main() -> None:
    """Entry point of the console script: turns slimrt errors into one clear line and an exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except SlimrtError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
