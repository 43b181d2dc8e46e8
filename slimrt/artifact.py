"""Reading, verifying and atomically updating a slimrt artifact directory (no torch).

Layout (every path relative to the artifact root, every file listed in the manifest with its sha256)::

    manifest.json              the :class:`~slimrt.schema.Manifest`
    manifest.sha256            "<hex sha256 of manifest.json>  manifest.json" (sha256sum format)
    subnets/<name>.onnx        one ONNX graph per sub-net ...
    subnets/weights.bin        ... all pointing into one shared external-data file (``manifest.weights``)
    torch/<name>.pt2           optional ``torch.export`` programs
    engines/<device-tag>/...   optional TensorRT engines (+ timing cache)
    latency/<fingerprint>.json stored latency profiles (``manifest.latency``)

Every error names the offending file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from slimrt.errors import ArtifactError
from slimrt.io import atomic_write_bytes, atomic_write_text
from slimrt.schema import SCHEMA_VERSION, LatencyProfile, LatencyRef, Manifest, safe_relpath, sha256_file

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
    "load_latency_profiles",
    "manifest_file_refs",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
SIDECAR_NAME = "manifest.sha256"

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
    with open(root / ".slimrt.lock", "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------- manifest


def _manifest_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_manifest(root: str | Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` and its ``manifest.sha256`` sidecar, each atomically."""
    root = Path(root)
    data = (manifest.model_dump_json(indent=2) + "\n").encode("utf-8")
    atomic_write_bytes(root / MANIFEST_NAME, data)
    atomic_write_text(root / SIDECAR_NAME, f"{_manifest_sha(data)}  {MANIFEST_NAME}\n")


def _read_manifest_bytes(root: Path) -> bytes:
    if not root.is_dir():
        raise ArtifactError(f"{root}: not an artifact directory (expected a folder holding {MANIFEST_NAME})")
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise ArtifactError(f"{mpath}: missing; {root} is not a slimrt artifact (re-export it with `slimrt export`)")
    return mpath.read_bytes()


def _check_sidecar(root: Path, data: bytes) -> None:
    side = root / SIDECAR_NAME
    if not side.is_file():
        raise ArtifactError(f"{side}: missing (it holds the sha256 of {MANIFEST_NAME}; re-export the artifact)")
    parts = side.read_text(encoding="utf-8", errors="replace").split()
    expected = parts[0].lower() if parts else ""
    found = _manifest_sha(data)
    if expected != found:
        raise ArtifactError(
            f"{root / MANIFEST_NAME}: sha256 {found[:16]}... does not match {SIDECAR_NAME} "
            f"({expected[:16] or 'empty'}...): the manifest was edited or corrupted"
        )


def _parse_manifest(root: Path, data: bytes) -> Manifest:
    mpath = root / MANIFEST_NAME
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{mpath}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ArtifactError(f"{mpath}: expected a JSON object, found {type(raw).__name__}")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{mpath}: unknown schema version {version} (this slimrt reads {SCHEMA_VERSION}); "
            "upgrade slimrt or re-export the artifact"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ArtifactError(f"{mpath}: invalid manifest at {loc or '<root>'}: {first['msg']}") from None


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
    if not path.is_file():
        return FileCheck(path=rel, kind=kind, ok=False, error=f"{rel}: missing ({kind} listed in the manifest)")
    actual = path.stat().st_size
    if size is not None and actual != size:
        return FileCheck(
            path=rel, kind=kind, bytes=actual, ok=False,
            error=f"{rel}: {actual} bytes, the manifest records {size} (truncated or replaced)",
        )
    found = sha256_file(path)
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
    report = VerifyReport(root=str(root))
    try:
        data = _read_manifest_bytes(root)
        _check_sidecar(root, data)
        manifest = _parse_manifest(root, data)
    except ArtifactError as e:
        report.files.append(FileCheck(path=MANIFEST_NAME, kind="manifest", ok=False, error=str(e)))
        report.error = str(e)
        return report, None
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
    return report, manifest


def load_manifest(root: str | Path, verify: bool = True) -> Manifest:
    """Read ``manifest.json``; with ``verify`` also check its sidecar and every listed file's size and sha256."""
    root = Path(root)
    if verify:
        return verify_artifact(root)
    return _parse_manifest(root, _read_manifest_bytes(root))


def verify_artifact(root: str | Path) -> Manifest:
    """Verify the whole artifact and return its manifest; raises ArtifactError naming the first bad file."""
    root = Path(root)
    report, manifest = _check(root)
    if not report.ok or manifest is None:
        raise ArtifactError(f"artifact {root} failed verification: {report.error}")
    return manifest


# ----------------------------------------------------------------------------------------- latency profiles


def add_latency_profile(root: str | Path, profile: LatencyProfile) -> LatencyRef:
    """Store ``profile`` as ``latency/<fingerprint_id>.json`` and list it in the manifest (replacing the same id)."""
    root = Path(root)
    with _locked(root):
        data = _read_manifest_bytes(root)
        _check_sidecar(root, data)
        manifest = _parse_manifest(root, data)
        names = {s.name for s in manifest.subnets}
        missing = names - {s.name for s in profile.subnets}
        if missing:
            raise ArtifactError(f"latency profile lacks sub-nets {sorted(missing)} of artifact {root}")
        fid = profile.fingerprint_id
        rel = f"latency/{fid}.json"
        path = resolve_inside(root, rel)
        atomic_write_text(path, profile.model_dump_json(indent=2) + "\n")
        ref = LatencyRef(
            fingerprint=fid, device=profile.device, backend=profile.fingerprint.backend,
            path=rel, sha256=sha256_file(path),
        )
        others = [r for r in manifest.latency if r.fingerprint != fid]
        write_manifest(root, manifest.model_copy(update={"latency": [*others, ref]}))
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
        path = resolve_inside(root, ref.path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ArtifactError(f"{ref.path}: not valid JSON ({e})") from None
        version = raw.get("schema_version") if isinstance(raw, dict) else None
        if version != SCHEMA_VERSION:
            raise ArtifactError(f"{ref.path}: unknown schema version {version} (this slimrt reads {SCHEMA_VERSION})")
        try:
            prof = LatencyProfile.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise ArtifactError(f"{ref.path}: invalid latency profile at {loc}: {first['msg']}") from None
        if prof.fingerprint_id != ref.fingerprint:
            raise ArtifactError(
                f"{ref.path}: fingerprint id {prof.fingerprint_id} does not match the manifest entry {ref.fingerprint}"
            )
        out.append(prof)
    return out
