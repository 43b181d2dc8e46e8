"""Artifact reading, verification and atomic updates (slimrt.artifact), on a real synthetic artifact."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from slimrt.artifact import (
    SIDECAR_NAME,
    add_latency_profile,
    atomic_write_bytes,
    atomic_write_text,
    check_artifact,
    load_latency_profiles,
    load_manifest,
    resolve_inside,
    verify_artifact,
    write_manifest,
)
from slimrt.errors import ArtifactError
from slimrt.fingerprint import device_fingerprint
from slimrt.schema import LatencyProfile, SubnetLatency


def _rewrite_manifest_json(root: Path, edit) -> None:
    """Edit manifest.json as raw JSON and re-seal the sidecar, as an attacker who knows the format would."""
    import hashlib

    raw = json.loads((root / "manifest.json").read_text())
    edit(raw)
    data = json.dumps(raw).encode()
    (root / "manifest.json").write_bytes(data)
    (root / SIDECAR_NAME).write_text(hashlib.sha256(data).hexdigest() + "  manifest.json\n")


def _profile(names: list[str], threads: int | None = 1) -> LatencyProfile:
    lat = [
        SubnetLatency(name=n, p50_ms=1.0 + i, p90_ms=1.2 + i, p95_ms=1.3 + i, p99_ms=1.5 + i, mean_ms=1.1 + i,
                      cv=0.05, runs=50)
        for i, n in enumerate(names)
    ]
    fp = device_fingerprint("onnxruntime", ["CPUExecutionProvider"], threads, "fp32", 1)
    return LatencyProfile(device="cpu", fingerprint=fp, created=datetime.now(timezone.utc).isoformat(), subnets=lat)


def test_pristine_artifact_verifies(synthetic_artifact: Path) -> None:
    m = verify_artifact(synthetic_artifact)
    assert [s.name for s in m.subnets] == ["w64", "w24", "w8"]
    report = check_artifact(synthetic_artifact)
    assert report.ok and report.error is None
    assert {f.path for f in report.files} == {
        "manifest.json", "subnets/weights.bin", "subnets/w64.onnx", "subnets/w24.onnx", "subnets/w8.onnx"
    }


def test_flipped_byte_in_onnx_is_named(synthetic_artifact: Path) -> None:
    p = synthetic_artifact / "subnets" / "w24.onnx"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"subnets/w24\.onnx: sha256 .* does not match"):
        verify_artifact(synthetic_artifact)
    # Without verification the manifest still loads (that is what verify=False is for).
    assert load_manifest(synthetic_artifact, verify=False).subnets[1].name == "w24"


def test_truncated_weights_reported_by_size(synthetic_artifact: Path) -> None:
    p = synthetic_artifact / "subnets" / "weights.bin"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(ArtifactError, match=r"subnets/weights\.bin: \d+ bytes, the manifest records \d+"):
        load_manifest(synthetic_artifact)


def test_missing_file_is_named(synthetic_artifact: Path) -> None:
    (synthetic_artifact / "subnets" / "w8.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"subnets/w8\.onnx: missing"):
        verify_artifact(synthetic_artifact)


def test_missing_manifest_and_sidecar(tmp_path: Path, synthetic_artifact: Path) -> None:
    with pytest.raises(ArtifactError, match="manifest.json: missing"):
        load_manifest(tmp_path)
    with pytest.raises(ArtifactError, match="not an artifact directory"):
        load_manifest(tmp_path / "nope")
    (synthetic_artifact / SIDECAR_NAME).unlink()
    with pytest.raises(ArtifactError, match=r"manifest\.sha256: missing"):
        verify_artifact(synthetic_artifact)


def test_edited_manifest_refused(synthetic_artifact: Path) -> None:
    p = synthetic_artifact / "manifest.json"
    p.write_text(p.read_text().replace('"val_accuracy": 90.0', '"val_accuracy": 99.0'))
    with pytest.raises(ArtifactError, match=r"manifest\.json: sha256 .* does not match manifest\.sha256"):
        verify_artifact(synthetic_artifact)


def test_unknown_schema_version(synthetic_artifact: Path) -> None:
    _rewrite_manifest_json(synthetic_artifact, lambda raw: raw.update(schema_version=7))
    with pytest.raises(ArtifactError, match=r"manifest\.json: unknown schema version 7 \(this slimrt reads 1\)"):
        verify_artifact(synthetic_artifact)
    with pytest.raises(ArtifactError, match="unknown schema version 7"):
        load_manifest(synthetic_artifact, verify=False)


@pytest.mark.parametrize("bad", ["../outside.onnx", "/etc/passwd", "subnets/../../x.onnx"])
def test_path_escaping_manifest_refused(synthetic_artifact: Path, bad: str) -> None:
    _rewrite_manifest_json(synthetic_artifact, lambda raw: raw["subnets"][0]["onnx"].update(path=bad))
    with pytest.raises(ArtifactError, match=r"manifest\.json: invalid manifest at subnets\.0\.onnx\.path"):
        verify_artifact(synthetic_artifact)


def test_symlink_escaping_artifact_refused(synthetic_artifact: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    target = synthetic_artifact / "subnets" / "w8.onnx"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    os.symlink(outside, target)
    with pytest.raises(ArtifactError, match=r"subnets/w8\.onnx: resolves to .* outside the artifact"):
        verify_artifact(synthetic_artifact)


def test_resolve_inside(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert resolve_inside(tmp_path, "a/b.txt") == (tmp_path / "a" / "b.txt").resolve()
    for bad in ["../x", "/abs", "a/../../x", "", "a\\b"]:
        with pytest.raises(ArtifactError):
            resolve_inside(tmp_path, bad)


def test_atomic_writes_leave_no_temp_files(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "d" / "f.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "d" / "f.bin", "replaced")
    assert (tmp_path / "d" / "f.bin").read_text() == "replaced"
    assert os.listdir(tmp_path / "d") == ["f.bin"]
    assert (tmp_path / "d" / "f.bin").stat().st_mode & 0o777 != 0o600  # not mkstemp's private mode


def test_write_manifest_roundtrip(synthetic_artifact: Path) -> None:
    m = load_manifest(synthetic_artifact)
    write_manifest(synthetic_artifact, m.model_copy(update={"arch": "renamed"}))
    assert load_manifest(synthetic_artifact).arch == "renamed"


def test_latency_profile_add_load_replace(synthetic_artifact: Path) -> None:
    m = load_manifest(synthetic_artifact)
    names = [s.name for s in m.subnets]
    ref = add_latency_profile(synthetic_artifact, _profile(names))
    assert ref.path == f"latency/{ref.fingerprint}-{ref.sha256[:12]}.json"
    m2 = verify_artifact(synthetic_artifact)  # the new file is listed and checksummed
    assert [r.fingerprint for r in m2.latency] == [ref.fingerprint]
    (prof,) = load_latency_profiles(synthetic_artifact, m2)
    assert prof.latency("w24").p50_ms == 2.0
    # Same fingerprint again replaces, a different one (other thread count) is added.
    add_latency_profile(synthetic_artifact, _profile(names))
    add_latency_profile(synthetic_artifact, _profile(names, threads=2))
    m3 = verify_artifact(synthetic_artifact)
    assert len(m3.latency) == 2 and len(load_latency_profiles(synthetic_artifact, m3)) == 2


def test_latency_profile_missing_subnet_refused(synthetic_artifact: Path) -> None:
    with pytest.raises(ArtifactError, match=r"lacks sub-nets \['w8'\]"):
        add_latency_profile(synthetic_artifact, _profile(["w64", "w24"]))


def test_tampered_latency_profile_refused(synthetic_artifact: Path) -> None:
    names = [s.name for s in load_manifest(synthetic_artifact).subnets]
    ref = add_latency_profile(synthetic_artifact, _profile(names))
    p = synthetic_artifact / ref.path
    p.write_text(p.read_text().replace('"p99_ms": 1.5', '"p99_ms": 9.5'))
    with pytest.raises(ArtifactError, match=rf"{ref.path}: sha256"):
        load_latency_profiles(synthetic_artifact, load_manifest(synthetic_artifact, verify=False))


def test_verify_cli(synthetic_artifact: Path) -> None:
    from typer.testing import CliRunner

    from slimrt.cli.app import app

    runner = CliRunner()
    ok = runner.invoke(app, ["verify", str(synthetic_artifact), "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["ok"] and len(report["files"]) == 5
    table = runner.invoke(app, ["verify", str(synthetic_artifact)])
    assert table.exit_code == 0 and "w24.onnx" in table.stdout
    (synthetic_artifact / "subnets" / "w24.onnx").write_bytes(b"garbage")
    bad = runner.invoke(app, ["verify", str(synthetic_artifact), "--json"])
    assert bad.exit_code == 1
    assert "subnets/w24.onnx" in json.loads(bad.stdout)["error"]
