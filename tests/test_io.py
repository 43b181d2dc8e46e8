"""slimrt.io: atomic writes and staged directories, on the real file system (permissions from the umask)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from slimrt.io import atomic_write, atomic_write_bytes, atomic_write_text, current_umask, dir_bytes, staged_dir


@pytest.fixture()
def umask_027() -> Iterator[int]:
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_current_umask_reads_without_changing(umask_027: int) -> None:
    assert current_umask() == umask_027
    assert current_umask() == umask_027  # reading did not change it


def test_new_file_gets_umask_permissions_and_replaced_file_keeps_its_mode(tmp_path: Path, umask_027: int) -> None:
    f = tmp_path / "sub" / "a.json"
    atomic_write_text(f, "one")
    assert f.read_text() == "one" and _mode(f) == 0o640
    os.chmod(f, 0o604)
    atomic_write_bytes(f, b"two")
    assert f.read_bytes() == b"two" and _mode(f) == 0o604
    assert sorted(p.name for p in f.parent.iterdir()) == ["a.json"]  # no temporary file left


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    f = tmp_path / "model.pt"
    f.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(f) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".pt"  # writers that read the suffix still work
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert f.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_staged_dir_appears_complete_or_not_at_all(tmp_path: Path, umask_027: int) -> None:
    target = tmp_path / "art.slim"
    with pytest.raises(KeyError), staged_dir(target) as work:
        (work / "half").write_text("x")
        raise KeyError("interrupted")
    assert list(tmp_path.iterdir()) == []

    with staged_dir(target) as work:
        assert work.parent == tmp_path and work.name.startswith(".art.slim.tmp-") and not target.exists()
        (work / "manifest.json").write_text("{}")
    assert (target / "manifest.json").read_text() == "{}"
    assert _mode(target) == 0o750  # not mkdtemp's 0700
    assert dir_bytes(target) == 2


def test_staged_dir_replaces_only_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "engines"
    target.mkdir()
    (target / "old.plan").write_text("old")
    with pytest.raises(FileExistsError), staged_dir(target) as work:
        (work / "new.plan").write_text("new")
    assert [p.name for p in target.iterdir()] == ["old.plan"]
    assert [p.name for p in tmp_path.iterdir()] == ["engines"]  # the staged work was discarded

    with staged_dir(target, replace=True) as work:
        (work / "new.plan").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.plan"]
    assert [p.name for p in tmp_path.iterdir()] == ["engines"]  # the old copy was removed
