"""LogProgress: periodic plain lines when output is not a terminal."""

from __future__ import annotations

import io
import time

from rich.console import Console

from slimrt.progress import LogProgress, format_seconds, plain_progress_wanted, progress_interval


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=300), buf


def test_lines_carry_phase_count_info_elapsed_and_eta():
    console, buf = _console()
    with LogProgress(console=console, interval=0, heartbeat=False) as p:
        task = p.add_task("pretrain", total=4, info="")
        for i in range(4):
            p.update(task, advance=1, info=f"epoch 1/1 loss {1.0 / (i + 1):.3f}")
        p.stop_task(task)
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith("pretrain 0/4 (0%) | started")
    assert any("pretrain 2/4 (50%) epoch 1/1 loss 0.500 | elapsed" in x and "ETA" in x for x in lines)
    assert lines[-1].endswith("| done") and "4/4 (100%)" in lines[-1]
    assert sum("done" in x for x in lines) == 1  # finished once, not again on stop_task


def test_interval_throttles_and_heartbeat_reports_a_stalled_task():
    console, buf = _console()
    with LogProgress(console=console, interval=3600, heartbeat=False) as p:
        task = p.add_task("search", total=1000, info="")
        for _ in range(100):
            p.advance(task)
    assert len(buf.getvalue().splitlines()) == 2  # start, and the end line when the display stops
    console, buf = _console()
    with LogProgress(console=console, interval=0.05) as p:
        p.add_task("measuring", total=None)
        time.sleep(0.4)
    assert sum("measuring | elapsed" in x for x in buf.getvalue().splitlines()) >= 2


def test_restarted_count_starts_a_new_stage_and_helpers(monkeypatch):
    console, buf = _console()
    with LogProgress(console=console, interval=0, heartbeat=False) as p:
        task = p.add_task("export", total=2)
        p.advance(task)
        p.advance(task)
        p.update(task, description="validate", completed=0)
        p.advance(task)
    text = buf.getvalue()
    assert "export 2/2 (100%)" in text and "validate 0/2 (0%) | started" in text and "validate 1/2" in text
    assert format_seconds(3723) == "1:02:03" and format_seconds(None) == "?"
    monkeypatch.setenv("SLIMRT_PROGRESS_INTERVAL", "2.5")
    assert progress_interval() == 2.5
    monkeypatch.setenv("SLIMRT_PROGRESS_INTERVAL", "soon")
    assert progress_interval() == 10.0
    assert plain_progress_wanted(console)
    assert not plain_progress_wanted(Console(file=io.StringIO(), force_terminal=True))
