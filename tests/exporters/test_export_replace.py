"""`export --force` swaps the artifact atomically; a killed replacement or export is cleaned up by the next export."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from slimrt.artifact import verify_artifact
from slimrt.io import _rename_exchange, clean_stale, replace_dir, staged_dir


def _two_artifacts(tmp_path: Path, build_artifact) -> tuple[Path, Path]:
    target = build_artifact(tmp_path / "a.slim")
    staged = build_artifact(tmp_path / ".a.slim.tmp-new", widths=(32, 8))
    return target, staged


def test_force_replacement_swaps_in_one_step(tmp_path: Path, build_artifact) -> None:
    target, staged = _two_artifacts(tmp_path, build_artifact)
    assert _rename_exchange(staged, target)  # this Linux supports RENAME_EXCHANGE: the target never disappears
    _rename_exchange(staged, target)  # swap back for the real call
    replace_dir(staged, target, replace=True)
    assert [s.name for s in verify_artifact(target).subnets] == ["w32", "w8"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.slim"]


def test_fallback_killed_between_renames_is_restored_by_the_next_export(tmp_path: Path, build_artifact) -> None:
    target, staged = _two_artifacts(tmp_path, build_artifact)
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        import slimrt.io as sio
        sio._rename_exchange = lambda a, b: False  # a file system without RENAME_EXCHANGE
        sio._between_renames = lambda: os._exit(9)
        sio.replace_dir(Path({str(staged)!r}), Path({str(target)!r}), True)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert not target.exists()  # the window the fallback cannot close ...
    clean_stale(target)  # ... which the next export of this target repairs first
    assert [s.name for s in verify_artifact(target).subnets] == ["w64", "w24", "w8"]
    assert not list(tmp_path.glob(".a.slim.old-*"))


def test_stale_staging_of_a_killed_export_is_removed_live_one_kept(tmp_path: Path) -> None:
    target = tmp_path / "a.slim"
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from slimrt.io import staged_dir
        with staged_dir(Path({str(target)!r})) as tmp:
            (tmp / "half.onnx").write_bytes(b"x")
            os._exit(9)
    """)
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 9
    (killed,) = [p for p in tmp_path.glob(".a.slim.tmp-*") if p.suffix != ".lock"]
    assert killed.with_name(killed.name + ".lock").exists()  # its lock file, no longer held by anyone
    with staged_dir(target) as live:  # the next export: cleans the killed one's folder, not its own
        assert not killed.exists() and not killed.with_name(killed.name + ".lock").exists() and live.is_dir()
        assert clean_stale(target) == [] and live.is_dir()  # a concurrent export's folder is left alone
