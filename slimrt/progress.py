"""Progress that reads well anywhere: rich bars on a terminal, periodic plain lines in a log file.

Training, search, export and bench report progress through a :class:`rich.progress.Progress`. Progress bars only
draw on a terminal; when output goes to a file or a pipe (``slimrt train ... 2> train.log``) :class:`LogProgress`
takes their place: it keeps the same API and prints one plain line per active task every ``interval`` seconds
(``$SLIMRT_PROGRESS_INTERVAL``, default 10), plus one when a task starts and one when it ends::

    12:03:04 pretrain 30/100 (30%) epoch 1/2 loss 1.234 | elapsed 0:00:12 ETA 0:00:28

A background thread keeps the lines coming while a single step is slow (a long measurement, a big batch).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = [
    "make_progress",
    "add_task",
    "advance",
    "finish",
    "LogProgress",
    "plain_progress_wanted",
    "progress_interval",
    "INTERVAL_ENV",
    "format_seconds",
]

INTERVAL_ENV = "SLIMRT_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0


def progress_interval(default: float = DEFAULT_INTERVAL) -> float:
    """Seconds between plain progress lines: ``$SLIMRT_PROGRESS_INTERVAL`` when set to a number >= 0, else default."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        return default
    return value if value >= 0 else default


def plain_progress_wanted(console: Console | None) -> bool:
    """True when ``console`` (None: rich's default console) is not a terminal, so bars would never be drawn."""
    from rich import get_console

    return not (console or get_console()).is_terminal


def format_seconds(seconds: float | None) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class LogProgress(Progress):
    """A :class:`~rich.progress.Progress` that never draws bars and prints periodic plain lines instead.

    Args:
        console: where the lines go (e.g. ``Console(stderr=True)`` writing to a redirected stderr).
        interval: seconds between lines of one task (None: :func:`progress_interval`); 0 prints every update.
        heartbeat: also print from a background thread when a task has not advanced for ``interval`` seconds.
    """

    def __init__(self, console: Console | None = None, interval: float | None = None, heartbeat: bool = True) -> None:
        super().__init__(console=console, disable=True, auto_refresh=False)
        self.interval = progress_interval() if interval is None else float(interval)
        self._last_line: dict[TaskID, float] = {}
        self._first: dict[TaskID, tuple[float, float]] = {}  # task -> (start time, completed at start)
        self._line_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat = heartbeat

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._heartbeat and self.interval > 0 and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="slimrt-progress", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        for task_id in list(self._first):  # tasks never completed nor removed (a measurement without steps)
            self._finish(task_id)

    def _beat(self) -> None:
        while not self._stop.wait(min(max(self.interval, 0.05), 1.0)):
            for task_id in list(self._first):
                self._maybe_line(task_id)

    # ------------------------------------------------------------------ the Progress API
    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
                 visible: bool = True, **fields: Any) -> TaskID:  # fmt: skip
        task_id = super().add_task(description, start=start, total=total, completed=completed, visible=visible,
                                   **fields)  # fmt: skip
        self._first[task_id] = (time.monotonic(), float(completed))
        self._line(task_id, "start")
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        if kwargs.get("completed") is not None and kwargs.get("advance") is None:  # a restarted count (export stages)
            restarted = task_id not in self._first
            self._first[task_id] = (time.monotonic(), float(kwargs["completed"]))
            if restarted:
                self._line(task_id, "start")
                return
        self._maybe_line(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_line(task_id)

    def stop_task(self, task_id: TaskID) -> None:
        self._finish(task_id)
        super().stop_task(task_id)

    def remove_task(self, task_id: TaskID) -> None:
        self._finish(task_id)
        super().remove_task(task_id)

    # ------------------------------------------------------------------ lines
    def _finish(self, task_id: TaskID) -> None:
        if task_id in self._first:
            self._line(task_id, "done")
            self._first.pop(task_id, None)

    def _maybe_line(self, task_id: TaskID) -> None:
        if task_id not in self._first:
            return
        now = time.monotonic()
        task = self._tasks.get(task_id)
        if task is not None and task.total is not None and task.completed >= task.total:
            self._finish(task_id)
        elif now - self._last_line.get(task_id, 0.0) >= self.interval:
            self._line(task_id)

    def _line(self, task_id: TaskID, event: str | None = None) -> None:
        with self._line_lock:
            task = self._tasks.get(task_id)
            if task is None:
                return
            now = time.monotonic()
            self._last_line[task_id] = now
            t_start, c_start = self._first.get(task_id, (now, 0.0))
            elapsed = now - t_start
            done, total = task.completed, task.total
            parts = [time.strftime("%H:%M:%S"), str(task.description)]
            if total:
                parts.append(f"{int(done)}/{int(total)} ({100 * done / total:.0f}%)")
            elif done:
                parts.append(f"{int(done)}")
            info = task.fields.get("info")
            if info:
                parts.append(str(info))
            eta = None
            if total and done > c_start and elapsed > 0:
                eta = elapsed / (done - c_start) * max(0.0, total - done)
            tail = f"| elapsed {format_seconds(elapsed)}"
            if event == "start":
                tail = "| started"
            elif event == "done":
                tail += " | done"
            elif total:
                tail += f" ETA {format_seconds(eta)}"
            parts.append(tail)
            self.console.print(" ".join(parts), markup=False, highlight=False, soft_wrap=True)


def make_progress(disable: bool = False, console: Any = None) -> Progress:
    """A rich progress display with bar, count, elapsed time, ETA and a free ``info`` field per task.

    When ``console`` is not a terminal (output redirected to a log file) the bars would never draw: a
    :class:`LogProgress` printing periodic plain lines takes their place.
    """
    if not disable and plain_progress_wanted(console):
        return LogProgress(console=console)
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
