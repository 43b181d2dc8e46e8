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
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "current_umask",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "staged_dir",
    "replace_dir",
    "clean_stale",
    "fsync_dir",
    "dir_bytes",
    "check_writable_parent",
]

log = logging.getLogger(__name__)

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


def _lock_of(staging: Path) -> Path:
    """The lock file of a staging directory: a sibling, so nothing extra lands in the target."""
    return staging.with_name(staging.name + ".lock")


def _try_lock(path: Path) -> Any:
    """An open file holding an exclusive flock on ``path``, or None when another live process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: treat nothing as stale
        return None
    f = open(path, "a+b")  # noqa: SIM115 - kept open for the lock's lifetime
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def clean_stale(target: str | Path) -> list[str]:
    """Remove staging folders of killed runs for ``target`` and restore or remove set-aside old directories.

    A staging folder is stale when no live process holds its lock (the staging process holds it until the rename).
    A set-aside ``.<name>.old-*`` directory is renamed back when the target is missing (a run killed between the two
    renames of the fallback replacement), else removed. Returns the names handled.
    """
    target = Path(target)
    done: list[str] = []
    if not target.parent.is_dir():
        return done
    for p in sorted(target.parent.glob(f".{target.name}.old-*")):
        if p.is_dir() and not p.is_symlink():
            if not (target.exists() or target.is_symlink()):
                os.rename(p, target)
                log.warning("restored %s from %s (an earlier run was killed while replacing it)", target, p.name)
            else:
                shutil.rmtree(p, ignore_errors=True)
            done.append(p.name)
    for p in sorted(target.parent.glob(f".{target.name}.tmp-*")):
        if p.is_symlink() or p.suffix == ".lock":
            continue
        lock = _lock_of(p)
        held = _try_lock(lock) if lock.exists() else None
        if lock.exists() and held is None:
            continue  # a live run is using it
        shutil.rmtree(p, ignore_errors=True)
        with contextlib.suppress(OSError):
            lock.unlink()
        if held is not None:
            held.close()
        done.append(p.name)
    if done:
        log.info("cleaned up after killed runs for %s: %s", target, ", ".join(done))
    return done


@contextlib.contextmanager
def staged_dir(target: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty hidden directory beside ``target`` (locked while in use); on success move it to ``target``.

    Args:
        target: the directory to create.
        replace: when ``target`` already exists, swap it out (:func:`replace_dir`). Without it an existing
            ``target`` raises FileExistsError and the staged work is discarded.

    Staging folders of earlier killed runs are removed first (:func:`clean_stale`). On any error inside the block
    (including KeyboardInterrupt) the staged directory is removed, so an interrupted run never leaves a
    complete-looking ``target``. Checks that must run right before the rename belong at the end of the block.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = target.parent / f".{target.name}.tmp-{secrets.token_hex(6)}"
    lock = _try_lock(_lock_of(tmp))  # taken before the directory exists: never mistaken for a killed run's
    try:
        tmp.mkdir(mode=0o777 & ~current_umask())
        yield tmp
        replace_dir(tmp, target, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            _lock_of(tmp).unlink()
        if lock is not None:
            lock.close()
    fsync_dir(target.parent)


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    import ctypes
    import errno
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False  # file system or kernel without RENAME_EXCHANGE
    raise OSError(err, os.strerror(err), str(b))


def _between_renames() -> None:
    """Called between the two renames of the fallback replacement; tests replace it to simulate a kill there."""


def replace_dir(tmp: str | Path, target: str | Path, replace: bool) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` (only with ``replace``) is swapped out atomically where
    Linux allows (``RENAME_EXCHANGE``), so readers never see it missing.

    Fallback: the old directory is renamed aside, then the new one in; a kill between the two leaves
    ``.<name>.old-*``, which the next :func:`staged_dir` for ``target`` renames back (:func:`clean_stale`).
    """
    tmp, target = Path(tmp), Path(target)
    if not (target.exists() or target.is_symlink()):
        os.rename(tmp, target)
        return
    if not replace:
        raise FileExistsError(f"{target} already exists")
    if target.is_dir() and not target.is_symlink() and _rename_exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # now holds the old directory
        return
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    os.rename(target, old)
    try:
        _between_renames()
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


def check_writable_parent(path: Path, label: str, hint: str = "") -> None:
    """Raise ConfigError unless the nearest existing folder above ``path`` is one this process can write to.

    Args:
        label: what the messages start with (the option and the path given, e.g. ``"--out model.pt"``).
        hint: appended to the permission message (what to do instead).
    """
    from slimrt.errors import ConfigError

    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{label}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{label}: cannot write to {parent} (permission denied){hint}")
