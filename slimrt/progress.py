"""One rich progress display for long phases (training, search, export, bench); torch-free."""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["make_progress", "add_task", "advance", "finish"]


def make_progress(disable: bool = False, console: Any = None) -> Progress:
    """A rich progress display with bar, count, elapsed time, ETA and a free ``info`` field per task."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        disable=disable,
        console=console,
    )


def add_task(progress: Progress | None, description: str, total: int | None, completed: int = 0) -> Any:
    """A task on ``progress`` with an empty ``info`` field (None when there is no display)."""
    if progress is None:
        return None
    return progress.add_task(description, total=total, completed=completed, info="")


def advance(progress: Progress | None, task: Any, info: str | None = None, advance: int = 1) -> None:
    """Advance ``task`` (a no-op without a display), optionally replacing its ``info`` text."""
    if progress is None or task is None:
        return
    if info is None:
        progress.advance(task, advance)
    else:
        progress.update(task, advance=advance, info=info)


def finish(progress: Progress | None, task: Any) -> None:
    """Stop ``task``'s clock (it stays on screen)."""
    if progress is not None and task is not None:
        progress.stop_task(task)
