"""``--max-minutes`` on the standard benchmark's trained methods: a US-Nets run stopped after every training piece
and twice inside its width grid, then finished, writes the very run file one uninterrupted command writes."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from accuracy_standard import DeadlineStop, PieceDeadline, main, parse_args, pretrain, run_method  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

TINY = {"dataset": "synthetic", "limit_train": 256, "val_size": 64, "pretrain_epochs": 2, "batch_size": 64,
        "arch_kwargs": {"widths": [4, 4, 8]}, "subnets": 3, "min_macs": 0.3}  # fmt: skip


def _usnet(root: Path, info: dict, max_minutes: float | None) -> bool:
    """One command; True when it stopped for the deadline."""
    try:
        run_method("usnet", 0, root / "results", root / "work", TINY, "test", None, info,
                   deadline=PieceDeadline(max_minutes))  # fmt: skip
    except DeadlineStop:
        return True
    return False


def test_usnet_stopped_at_every_piece_writes_the_uninterrupted_result(tmp_path, caplog):
    once, pieces = tmp_path / "once", tmp_path / "pieces"
    info = pretrain(0, once / "results", once / "work", TINY, None)
    shutil.copytree(once / "results", pieces / "results")  # the same pre-trained network
    assert not _usnet(once, info, None)
    ckpt, grid_cache = pieces / "work" / "usnet-seed0.pt", pieces / "work" / "usnet-seed0.pt.grid.json"
    out = pieces / "results" / "usnet-seed0.json"

    # the first command goes through main(): the stop is a normal exit with a message, no run file
    root, before = logging.getLogger(), list(logging.getLogger().handlers)
    try:
        with caplog.at_level(logging.INFO, logger="bench.accuracy.standard"):
            rc = main(["--method", "usnet", "--seed", "0", "--results", str(pieces / "results"), "--work-dir",
                       str(pieces / "work"), "--max-minutes", "0", *[f"--set={k}={json.dumps(v)}"
                                                                     for k, v in TINY.items()]])  # fmt: skip
    finally:
        for h in [h for h in root.handlers if h not in before]:
            root.removeHandler(h)
            h.close()
    assert rc == 0 and "run the same command again to continue" in caplog.text and not out.exists()
    assert (pieces / "work" / "usnet-seed0.pt.resume.pt").exists() and not ckpt.exists()

    training_commands = 1
    while not ckpt.exists():  # one training piece per command
        assert _usnet(pieces, info, 0)
        training_commands += 1
        assert training_commands < 20
    assert training_commands >= 4  # the 6 epochs really were split across commands
    # the command that finished training went on to the grid (its time was not up before that piece)
    rows = len(json.loads(grid_cache.read_text())["rows"]) if grid_cache.exists() else 0
    for _ in range(2):  # two commands that each evaluate one more grid width, then stop
        assert _usnet(pieces, info, 0)
        assert len(json.loads(grid_cache.read_text())["rows"]) == rows + 1 and not out.exists()
        rows += 1
    assert not _usnet(pieces, info, None)
    assert not grid_cache.exists()

    a = json.loads((once / "results" / "usnet-seed0.json").read_text())
    b = json.loads(out.read_text())
    for key in ("subnets", "grid", "width_range", "compute"):
        assert a[key] == b[key], key
    assert len(b["grid"]) == 49


def test_a_grid_cache_of_another_checkpoint_is_not_used(tmp_path, caplog):
    info = pretrain(0, tmp_path / "results", tmp_path / "work", TINY, None)
    while _usnet(tmp_path, info, 0) and not (tmp_path / "work" / "usnet-seed0.pt.grid.json").exists():
        pass
    cache = tmp_path / "work" / "usnet-seed0.pt.grid.json"
    data = json.loads(cache.read_text())
    [name] = data["rows"]
    data["rows"][name]["test_accuracy"] = -1.0  # would surface in the run file if it were reused
    data["checkpoint_sha256"] = "0" * 64
    cache.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="bench.accuracy.standard"):
        assert not _usnet(tmp_path, info, None)
    assert "belongs to another checkpoint" in caplog.text
    run = json.loads((tmp_path / "results" / "usnet-seed0.json").read_text())
    assert all(r["test_accuracy"] >= 0 for r in run["grid"])


def test_max_minutes_is_for_method_runs(capsys):
    assert parse_args(["--method", "usnet", "--max-minutes", "55"]).max_minutes == 55
    assert parse_args(["--method", "independent-uniform", "--max-minutes", "55"]).max_minutes == 55
    with pytest.raises(SystemExit):
        parse_args(["--aggregate", "--max-minutes", "5"])
    assert "not --aggregate" in capsys.readouterr().err


def test_deadline_estimates_the_next_piece_by_the_longest_so_far(monkeypatch):
    import accuracy_standard

    now = [100.0]
    monkeypatch.setattr(accuracy_standard.time, "monotonic", lambda: now[0])
    d = PieceDeadline(10 / 60)  # 10 s
    now[0] += 1  # a 1 s piece: 9 s left, room for another 1 s one
    d.piece_done("a")
    now[0] += 5  # a 5 s piece: 4 s left, and the next may take 5 s
    with pytest.raises(DeadlineStop, match="b"):
        d.piece_done("b")
    d = PieceDeadline(10 / 60)
    for _ in range(4):  # 2 s pieces: after the 4th, 2 s left, exactly room for a 5th
        now[0] += 2
        d.piece_done("c")
    now[0] += 2
    with pytest.raises(DeadlineStop):
        d.piece_done("d")
    unlimited = PieceDeadline(None)
    now[0] += 10**6
    unlimited.piece_done("e")  # never stops
    late = PieceDeadline(0)
    now[0] += 60
    assert late.room()  # past the deadline, yet the command's first piece runs
    late.lap()  # a piece that ends without a check (the last epoch of a network) still counts
    assert not late.room() and late.longest == 60
