"""Reading, verifying and atomically updating a slimrt artifact directory (no torch).

Layout (every path relative to the artifact root, every file listed in the manifest with its sha256)::

    manifest.json              the :class:`~slimrt.schema.Manifest`
    manifest.sha256            "<hex sha256 of manifest.json>  manifest.json" (sha256sum format)
    subnets/<name>.onnx        one ONNX graph per sub-net ...
    subnets/weights.bin        ... all pointing into one shared external-data file (``manifest.weights``)
    torch/<name>.pt2           optional ``torch.export`` programs
    engines/<device-tag>/...   optional TensorRT engines (+ timing cache)
    latency/<fingerprint>-<sha12>.json  stored latency profiles (``manifest.latency``; a new name per save)

Every error names the offending file.

Updates are crash-safe and atomic for readers. A manifest update (:func:`write_manifest`) first lists both the
current and the new manifest's sha256 in ``manifest.sha256``, then renames the new ``manifest.json`` in, then lists
only the new sha256; every file the new manifest adds is written under a fresh name before, and files only the old
manifest listed are removed on a later update. At every instant the pair on disk is consistent, a killed update
leaves the old or the new artifact (both verify), and readers re-read when the manifest changed under them. The
next update, under the advisory lock ``.slimrt.lock``, finishes a killed one (see :func:`recover_artifact`).

Limits (refused before anything is opened): ``manifest.json`` at most :data:`MAX_MANIFEST_BYTES` bytes and
:data:`~slimrt.schema.MAX_SUBNETS` sub-nets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ValidationError

from slimrt.errors import ArtifactError
from slimrt.io import atomic_write_bytes, atomic_write_text
from slimrt.schema import (
    LatencyProfile,
    LatencyRef,
    Manifest,
    check_schema_version,
    safe_relpath,
    sha256_file,
)

__all__ = [
    "MANIFEST_NAME",
    "SIDECAR_NAME",
    "FileCheck",
    "VerifyReport",
    "load_manifest",
    "verify_artifact",
    "check_artifact",
    "resolve_inside",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_manifest",
    "add_latency_profile",
    "recover_artifact",
    "check_writable",
    "MAX_MANIFEST_BYTES",
    "load_latency_profiles",
    "manifest_file_refs",
]

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)

MANIFEST_NAME = "manifest.json"
SIDECAR_NAME = "manifest.sha256"
LOCK_NAME = ".slimrt.lock"
MAX_MANIFEST_BYTES = 4 << 20
"""Largest ``manifest.json`` slimrt reads (4 MiB; an exported manifest of 64 sub-nets is well under 100 kB)."""
_READ_RETRIES = 8


def _fault(step: str) -> None:
    """Called between the steps of an update; tests replace it to simulate a crash at ``step``."""


FileKind = Literal["manifest", "weights", "onnx", "torch_program", "engine", "timing_cache", "latency"]


class FileCheck(BaseModel):
    """Result of checking one file of an artifact."""

    path: str
    kind: FileKind
    bytes: int | None = None
    ok: bool
    error: str | None = None


class VerifyReport(BaseModel):
    """Every file of an artifact that was checked; ``ok`` only when all passed."""

    root: str
    schema_version: int | None = None
    subnets: list[str] = []
    files: list[FileCheck] = []
    ok: bool = False
    error: str | None = None


# ----------------------------------------------------------------------------------------- paths & writes


def resolve_inside(root: str | Path, rel: str) -> Path:
    """Absolute path of ``rel`` inside ``root``; raises ArtifactError for '..', absolute paths or escaping symlinks."""
    try:
        safe_relpath(rel)
    except ValueError as e:
        raise ArtifactError(f"{rel}: {e}") from None
    base = Path(root).resolve()
    path = (base / rel).resolve()
    if path != base and base not in path.parents:
        raise ArtifactError(f"{rel}: resolves to {path}, outside the artifact {base} (symlink escaping the artifact)")
    return path


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Advisory lock on the artifact (POSIX), so concurrent profile saves do not lose each other's entries."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    try:
        f = open(root / LOCK_NAME, "a+b")  # noqa: SIM115
    except OSError as e:
        raise ArtifactError(f"{root}: cannot update the artifact ({e.strerror}); it must be writable") from None
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------- manifest


def _manifest_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sidecar_line(sha: str) -> str:
    return f"{sha}  {MANIFEST_NAME}\n"


def _sidecar_hashes(root: Path) -> list[str]:
    try:
        text = (root / SIDECAR_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line.split()[0].lower() for line in text.splitlines() if line.split()]


def write_manifest(root: str | Path, manifest: Manifest) -> None:
    """Replace ``manifest.json`` and its ``manifest.sha256`` so that the pair on disk is consistent at every instant.

    Steps: the sidecar lists the current and the new sha256; the new manifest is renamed in; the sidecar lists only
    the new sha256. A crash leaves the old or the new manifest, each accepted by the sidecar on disk.
    """
    root = Path(root)
    data = (manifest.model_dump_json(indent=2) + "\n").encode("utf-8")
    new = _manifest_sha(data)
    try:
        old = _manifest_sha((root / MANIFEST_NAME).read_bytes())
    except OSError:
        old = None
    if old is not None and old != new and old in _sidecar_hashes(root):
        atomic_write_text(root / SIDECAR_NAME, _sidecar_line(new) + _sidecar_line(old))
        _fault("sidecar-lists-both")
    elif old != new:  # no consistent pair to keep (fresh artifact): the new sidecar may go first
        atomic_write_text(root / SIDECAR_NAME, _sidecar_line(new))
        _fault("sidecar-lists-both")
    atomic_write_bytes(root / MANIFEST_NAME, data)
    _fault("manifest-replaced")
    atomic_write_text(root / SIDECAR_NAME, _sidecar_line(new))


def _read_manifest_bytes(root: Path) -> bytes:
    if not root.is_dir():
        raise ArtifactError(f"{root}: not an artifact directory (expected a folder holding {MANIFEST_NAME})")
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise ArtifactError(f"{mpath}: missing; {root} is not a slimrt artifact (re-export it with `slimrt export`)")
    if mpath.is_symlink():
        raise ArtifactError(f"{mpath}: is a symlink (to {os.readlink(mpath)}); a manifest must be a regular file")
    size = mpath.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ArtifactError(
            f"{mpath}: {size:,} bytes, over the limit of {MAX_MANIFEST_BYTES:,} bytes a slimrt manifest may have"
        )
    with open(mpath, "rb") as f:
        return f.read(MAX_MANIFEST_BYTES + 1)


def _read_consistent(root: Path) -> bytes:
    """Manifest bytes whose sha256 the sidecar lists; re-reads while an update replaces the pair underneath."""
    data = _read_manifest_bytes(root)
    for _ in range(_READ_RETRIES):
        try:
            _check_sidecar(root, data)
            return data
        except ArtifactError:
            again = _read_manifest_bytes(root)
            if again == data and _manifest_sha(data) not in _sidecar_hashes(root):
                # stable and still unlisted: one more look in case only the sidecar was being replaced
                time.sleep(0.01)
                if _manifest_sha(_read_manifest_bytes(root)) not in _sidecar_hashes(root):
                    raise
            data = again
    _check_sidecar(root, data)
    return data


def _check_sidecar(root: Path, data: bytes) -> None:
    side = root / SIDECAR_NAME
    if not side.is_file():
        raise ArtifactError(f"{side}: missing (it holds the sha256 of {MANIFEST_NAME}; re-export the artifact)")
    hashes = _sidecar_hashes(root)
    expected = hashes[0] if hashes else ""
    found = _manifest_sha(data)
    if found not in hashes:
        raise ArtifactError(
            f"{root / MANIFEST_NAME}: sha256 {found[:16]}... does not match {SIDECAR_NAME} "
            f"({expected[:16] or 'empty'}...): the manifest was edited or corrupted"
        )


def _parse_versioned(where: str | Path, data: bytes, model: type[_M], what: str) -> _M:
    """Parse a JSON document with a ``schema_version`` into ``model``; every failure is an ArtifactError naming
    ``where`` (a wrong version is reported before any other field)."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ArtifactError(f"{where}: expected a JSON object, found {type(raw).__name__}")
    try:
        check_schema_version(raw.get("schema_version"))
    except ValueError as e:
        raise ArtifactError(f"{where}: {e}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ArtifactError(f"{where}: invalid {what} at {loc or '<root>'}: {first['msg']}") from None


def _parse_manifest(root: Path, data: bytes) -> Manifest:
    return _parse_versioned(root / MANIFEST_NAME, data, Manifest, "manifest")


def manifest_file_refs(manifest: Manifest) -> list[tuple[FileKind, str, str, int | None]]:
    """Every file the manifest lists, as ``(kind, path, sha256, bytes-or-None)``."""
    refs: list[tuple[FileKind, str, str, int | None]] = [
        ("weights", manifest.weights.path, manifest.weights.sha256, manifest.weights.bytes)
    ]
    for s in manifest.subnets:
        refs.append(("onnx", s.onnx.path, s.onnx.sha256, s.onnx.bytes))
        if s.torch_program is not None:
            refs.append(("torch_program", s.torch_program.path, s.torch_program.sha256, s.torch_program.bytes))
    for es in manifest.engines:
        if es.timing_cache is not None:
            refs.append(("timing_cache", es.timing_cache.path, es.timing_cache.sha256, es.timing_cache.bytes))
        for e in es.engines:
            refs.append(("engine", e.path, e.sha256, None))
    for lr in manifest.latency:
        refs.append(("latency", lr.path, lr.sha256, None))
    return refs


def _check_file(root: Path, kind: FileKind, rel: str, sha: str, size: int | None) -> FileCheck:
    try:
        path = resolve_inside(root, rel)
    except ArtifactError as e:
        return FileCheck(path=rel, kind=kind, ok=False, error=str(e))
    missing = FileCheck(path=rel, kind=kind, ok=False, error=f"{rel}: missing ({kind} listed in the manifest)")
    if not path.is_file():
        return missing
    try:  # the file may be removed between the checks (a concurrent save replaced it): the caller re-reads
        actual = path.stat().st_size
        if size is not None and actual != size:
            return FileCheck(
                path=rel, kind=kind, bytes=actual, ok=False,
                error=f"{rel}: {actual} bytes, the manifest records {size} (truncated or replaced)",
            )
        found = sha256_file(path)  # only once the size matches: no hashing of a truncated file
    except FileNotFoundError:
        return missing
    if found != sha:
        return FileCheck(
            path=rel, kind=kind, bytes=actual, ok=False,
            error=f"{rel}: sha256 {found[:16]}... does not match the manifest ({sha[:16]}...): corrupted or modified",
        )
    return FileCheck(path=rel, kind=kind, bytes=actual, ok=True)


def check_artifact(root: str | Path) -> VerifyReport:
    """Check the manifest and every file it lists; never raises for a bad file (see ``report.ok``/``error``)."""
    return _check(Path(root))[0]


def _check(root: Path) -> tuple[VerifyReport, Manifest | None]:
    for _ in range(_READ_RETRIES):
        report, manifest, data = _check_once(root)
        if report.ok or data is None:
            break
        with contextlib.suppress(ArtifactError):
            if _read_manifest_bytes(root) == data:
                break  # the manifest did not change while its files were checked: the failure is real
    return report, manifest


def _check_once(root: Path) -> tuple[VerifyReport, Manifest | None, bytes | None]:
    report = VerifyReport(root=str(root))
    data: bytes | None = None
    try:
        data = _read_consistent(root)
        manifest = _parse_manifest(root, data)
    except ArtifactError as e:
        report.files.append(FileCheck(path=MANIFEST_NAME, kind="manifest", ok=False, error=str(e)))
        report.error = str(e)
        return report, None, data
    report.schema_version = manifest.schema_version
    report.subnets = [s.name for s in manifest.subnets]
    report.files.append(FileCheck(path=MANIFEST_NAME, kind="manifest", bytes=len(data), ok=True))
    seen: set[str] = set()
    for kind, rel, sha, size in manifest_file_refs(manifest):
        if rel in seen:
            continue
        seen.add(rel)
        report.files.append(_check_file(root, kind, rel, sha, size))
    bad = [f for f in report.files if not f.ok]
    report.ok = not bad
    if bad:
        more = f" (and {len(bad) - 1} more bad file(s))" if len(bad) > 1 else ""
        report.error = f"{bad[0].error}{more}"
    return report, manifest, data


def load_manifest(root: str | Path, verify: bool = True) -> Manifest:
    """Read ``manifest.json``; with ``verify`` also check its sidecar and every listed file's size and sha256."""
    root = Path(root)
    if verify:
        return verify_artifact(root)
    return _parse_manifest(root, _read_consistent(root))


def verify_artifact(root: str | Path) -> Manifest:
    """Verify the whole artifact and return its manifest; raises ArtifactError naming the first bad file."""
    root = Path(root)
    report, manifest = _check(root)
    if not report.ok or manifest is None:
        raise ArtifactError(f"artifact {root} failed verification: {report.error}")
    return manifest


# ----------------------------------------------------------------------------------------- latency profiles


def check_writable(root: str | Path) -> None:
    """ArtifactError unless a latency profile could be stored in ``root`` (checked before measuring)."""
    root = Path(root)
    for d in (root, root / "latency"):
        if d.exists() and not os.access(d, os.W_OK | os.X_OK):
            raise ArtifactError(f"{d}: not writable, so the latency profile cannot be stored (use --no-save)")


def recover_artifact(root: str | Path) -> list[str]:
    """Finish a killed update (call with the lock held): one sha256 in the sidecar, no leftover files.

    Removes temporary files of interrupted writes and latency files the manifest no longer lists. Returns what it
    removed or rewrote (paths relative to ``root``).
    """
    root = Path(root)
    done: list[str] = []
    data = _read_consistent(root)
    if len(_sidecar_hashes(root)) != 1:
        atomic_write_text(root / SIDECAR_NAME, _sidecar_line(_manifest_sha(data)))
        done.append(SIDECAR_NAME)
    manifest = _parse_manifest(root, data)
    listed = {lr.path for lr in manifest.latency}
    for d in (root, root / "latency"):
        if not d.is_dir():
            continue
        for p in d.iterdir():
            rel = p.relative_to(root).as_posix()
            stale_tmp = p.name.startswith(".") and p.name.endswith(".tmp")
            stale_profile = d.name == "latency" and p.suffix == ".json" and rel not in listed
            if (stale_tmp or stale_profile) and p.is_file() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    p.unlink()
                    done.append(rel)
    if done:
        log.info("recovered %s after an interrupted update: %s", root, ", ".join(done))
    return done


def add_latency_profile(root: str | Path, profile: LatencyProfile) -> LatencyRef:
    """Store ``profile`` as a new ``latency/<fingerprint_id>-<sha12>.json`` and list it in the manifest.

    Replaces the entry of the same fingerprint. Concurrent saves serialise on the artifact's advisory lock; readers
    see the old or the new artifact, never a mix; a save killed at any point leaves a valid artifact, and the next
    save finishes it (:func:`recover_artifact`).
    """
    root = Path(root)
    with _locked(root):
        recover_artifact(root)
        manifest = _parse_manifest(root, _read_consistent(root))
        names = {s.name for s in manifest.subnets}
        missing = names - {s.name for s in profile.subnets}
        if missing:
            raise ArtifactError(f"latency profile lacks sub-nets {sorted(missing)} of artifact {root}")
        fid = profile.fingerprint_id
        # no thread variants: written exactly as before they existed, so older readers still load it
        skip = None if profile.thread_variants else {"thread_variants"}
        data = (profile.model_dump_json(indent=2, exclude=skip) + "\n").encode("utf-8")
        sha = hashlib.sha256(data).hexdigest()
        rel = f"latency/{fid}-{sha[:12]}.json"
        path = resolve_inside(root, rel)
        atomic_write_bytes(path, data)
        _fault("profile-written")
        ref = LatencyRef(fingerprint=fid, device=profile.device, backend=profile.fingerprint.backend, path=rel,
                         sha256=sha)  # fmt: skip
        others = [r for r in manifest.latency if r.fingerprint != fid]
        write_manifest(root, manifest.model_copy(update={"latency": [*others, ref]}))
        _fault("sidecar-final")
    log.info("stored latency profile %s (%s, %s) in %s", fid, profile.device, ref.backend, root)
    return ref


def load_latency_profiles(root: str | Path, manifest: Manifest) -> list[LatencyProfile]:
    """Read, checksum and parse every latency profile the manifest lists."""
    root = Path(root)
    out: list[LatencyProfile] = []
    for ref in manifest.latency:
        check = _check_file(root, "latency", ref.path, ref.sha256, None)
        if not check.ok:
            raise ArtifactError(check.error or ref.path)
        data = resolve_inside(root, ref.path).read_bytes()
        prof = _parse_versioned(ref.path, data, LatencyProfile, "latency profile")
        if prof.fingerprint_id != ref.fingerprint:
            raise ArtifactError(
                f"{ref.path}: fingerprint id {prof.fingerprint_id} does not match the manifest entry {ref.fingerprint}"
            )
        out.append(prof)
    return out
