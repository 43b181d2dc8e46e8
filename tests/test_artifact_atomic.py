"""Saving a latency profile is atomic for readers, serialised between writers, and survives a kill at every step."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slimrt.artifact import (
    SIDECAR_NAME,
    check_artifact,
    check_writable,
    load_latency_profiles,
    load_manifest,
    verify_artifact,
)
from slimrt.errors import ArtifactError

STEPS = ["profile-written", "sidecar-lists-both", "manifest-replaced", "sidecar-final"]

_SAVE = textwrap.dedent(
    """
    import os, sys
    from datetime import datetime, timezone
    import slimrt.artifact as art
    from slimrt.fingerprint import device_fingerprint
    from slimrt.schema import LatencyProfile, SubnetLatency

    root, kill_at = sys.argv[1], sys.argv[2]
    p50, threads, repeat = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    if kill_at != "none":
        art._fault = lambda step: os._exit(9) if step == kill_at else None
    names = [s.name for s in art.load_manifest(root).subnets]
    fp = device_fingerprint("onnxruntime", ["CPUExecutionProvider"], threads, "fp32", 1)
    for r in range(repeat):
        lat = [SubnetLatency(name=n, p50_ms=p50 + r + i, p90_ms=p50 + r + i + 0.2, p95_ms=p50 + r + i + 0.3,
                             p99_ms=p50 + r + i + 0.5, mean_ms=p50 + r + i + 0.1, cv=0.05, runs=50)
               for i, n in enumerate(names)]
        prof = LatencyProfile(device="cpu", fingerprint=fp, created=datetime.now(timezone.utc).isoformat(),
                              subnets=lat)
        art.add_latency_profile(root, prof)
    """
)


def _save(root: Path, kill_at: str = "none", p50: float = 1.0, threads: int = 1, repeat: int = 1) -> subprocess.Popen:
    args = [sys.executable, "-c", _SAVE, str(root), kill_at, str(p50), str(threads), str(repeat)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(root: Path, **kwargs) -> subprocess.CompletedProcess:
    p = _save(root, **kwargs)
    out, err = p.communicate(timeout=120)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.mark.parametrize("step", STEPS)
def test_profile_save_killed_at_each_step_leaves_a_valid_artifact(synthetic_artifact: Path, step: str) -> None:
    from slimrt import SlimRuntime

    root = synthetic_artifact
    assert _run(root, p50=1.0).returncode == 0  # an old profile to replace
    killed = _run(root, kill_at=step, p50=5.0)
    assert killed.returncode == 9, killed.stderr  # the process died at `step`, no clean-up ran
    report = check_artifact(root)
    assert report.ok, report.error
    (prof,) = load_latency_profiles(root, load_manifest(root))
    assert prof.subnets[0].p50_ms in (1.0, 5.0)  # the old or the new profile, whole
    with SlimRuntime(root, budget_ms=1e3, threads=1, measure_runs=5, measure_seconds=0.5) as rt:
        assert rt.latency_profile.subnets
    # the next save finishes the interrupted one: one sha256 in the sidecar, no stray files
    (root / "latency" / ".stale.json.tmp").write_bytes(b"half")
    assert _run(root, p50=7.0).returncode == 0
    m = verify_artifact(root)
    assert len((root / SIDECAR_NAME).read_text().splitlines()) == 1
    files = {p.name for p in (root / "latency").iterdir()}
    assert not any(f.endswith(".tmp") for f in files)
    # what remains: the listed profile and at most the one it just replaced (kept for readers of the old manifest)
    assert Path(m.latency[0].path).name in files and len(files) <= 2


def test_readers_never_see_a_half_saved_profile(synthetic_artifact: Path) -> None:
    """Two benches save 15 profiles each (serialised by the lock) while this process verifies in a loop."""
    root = synthetic_artifact
    writers = [_save(root, p50=1.0, threads=1, repeat=15), _save(root, p50=2.0, threads=2, repeat=15)]
    checks, errors = 0, []
    while any(w.poll() is None for w in writers) or checks < 5:
        report = check_artifact(root)
        checks += 1
        if not report.ok:
            errors.append(report.error)
    for w in writers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
    assert not errors, f"{len(errors)} of {checks} reads failed, first: {errors[0]}"
    m = verify_artifact(root)
    assert len(m.latency) == 2  # neither bench lost the other's entry
    assert {p.subnets[0].p50_ms for p in load_latency_profiles(root, m)} == {15.0, 16.0}  # each one's last save


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_artifact_is_reported_before_measuring(synthetic_artifact: Path) -> None:
    os.chmod(synthetic_artifact, 0o555)
    try:
        with pytest.raises(ArtifactError, match="not writable"):
            check_writable(synthetic_artifact)
    finally:
        os.chmod(synthetic_artifact, 0o755)
