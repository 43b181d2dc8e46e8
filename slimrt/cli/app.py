"""The ``slimrt`` command: wires one sub-command per module; heavy imports happen inside each command."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import typer
from pydantic import ValidationError

try:  # typer >= 0.2x vendors click as typer._click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[no-redef]

from slimrt.cli import bench, export, info, latency_table, schema_cmd, train, verify
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
app.command("latency-table")(latency_table.latency_table)

def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _validation_message(e: ValidationError) -> str:
    first = e.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    value = first.get("input")
    return f"invalid {loc or 'value'} {value!r}: {first['msg']}"


def _error(message: str, code: int) -> NoReturn:
    """One unwrapped line on stderr (no rich wrapping at 80 columns on a pipe), then exit with ``code``."""
    sys.stderr.write(f"error: {_one_line(message)}\n")
    sys.stderr.flush()
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: every error is one line on stderr and a non-zero exit code.

    ``--debug`` (anywhere on the command line) shows the traceback of unexpected errors instead.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")  # fmt: skip
    try:
        code = app(args=args, prog_name="slimrt", standalone_mode=False)
    except NoArgsIsHelpError as e:
        if e.ctx is not None:
            typer.echo(e.ctx.get_help())
        sys.exit(2)
    except UsageError as e:
        hint = f" (see `slimrt {e.ctx.info_name} --help`)" if e.ctx is not None and e.ctx.parent else ""
        _error(f"{e.format_message()}{hint}", 2)
    except typer.Abort:
        _error("aborted", 130)
    except SlimrtError as e:
        if debug:
            raise
        _error(str(e), e.exit_code)
    except ValidationError as e:
        if debug:
            raise
        _error(_validation_message(e), 2)
    except OSError as e:
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        _error(f"{where}{e.strerror or e}", 1)
    except Exception as e:  # an unexpected error: one line, the traceback with --debug
        if debug:
            raise
        _error(f"{type(e).__name__}: {e} (internal error; rerun with --debug for the traceback)", 1)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
