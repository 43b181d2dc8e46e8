"""Crash-safe file writing shared by export, checkpoints, plots, bench and the benchmarks (no torch).

* :func:`atomic_write` yields a temporary path beside the destination; whatever the caller writes there
  (``torch.save``, ``fig.savefig``, bytes) is fsynced and renamed over the destination only when the block
  succeeds, so readers see the old file or the new one, never half of one.
* :func:`staged_dir` does the same for a whole directory (an artifact, an engine set): work happens in a hidden
  ``.<name>.tmp-XXXX`` directory beside the target, renamed into place at the end.

New files and directories get the permissions the process umask allows (``0o666``/``0o777`` minus the umask),
like ``open()`` and ``mkdir()`` would give them; a file that is replaced keeps its mode.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "current_umask",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "staged_dir",
    "fsync_dir",
    "dir_bytes",
]

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:  # elsewhere: set and restore (other threads' umask reads are serialised by the lock)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def fsync_dir(d: str | Path) -> None:
    """fsync a directory so a rename inside it survives a crash (best effort: ignored where unsupported)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success fsync it and rename it over ``path``.

    The temporary name keeps ``path``'s suffix (``.<name>.XXXX.tmp<suffix>``) so writers that pick a format from
    the suffix (matplotlib) still do. On any error, including KeyboardInterrupt, the temporary file is removed and
    ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o666 & ~current_umask()
        os.chmod(tmp, mode)  # mkstemp creates 0600
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staged_dir(target: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty hidden directory beside ``target``; on success rename it to ``target``.

    Args:
        target: the directory to create.
        replace: when ``target`` already exists, swap it out (it is renamed aside, the staged directory renamed
            in, then the old one deleted; restored if the second rename fails). Without it an existing
            ``target`` raises FileExistsError and the staged work is discarded.

    On any error inside the block (including KeyboardInterrupt) the staged directory is removed, so an
    interrupted run never leaves a complete-looking ``target``. Checks that must run right before the rename
    (for example that ``target`` is safe to replace) belong at the end of the block.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700
        yield tmp
        _move_into_place(tmp, target, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(target.parent)


def _move_into_place(tmp: Path, target: Path, replace: bool) -> None:
    if not (target.exists() or target.is_symlink()):
        os.rename(tmp, target)
        return
    if not replace:
        raise FileExistsError(f"{target} already exists")
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


def dir_bytes(root: str | Path) -> int:
    """Total size of the regular files under ``root``."""
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
