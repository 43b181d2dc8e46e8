"""Import rules (GUIDE.md): schema, artifact, runtime, backends, bench, io and testing never import torch;
`slimrt --help` stays light; train never imports exporters. Checked in fresh interpreters with torch made
unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BLOCK = textwrap.dedent(
    """
    import sys

    class _Block:
        BLOCKED = ("torch", "tensorrt", "matplotlib")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"import of {name} is blocked by the import-rule test")
            return None

    sys.meta_path.insert(0, _Block())
    """
)


def run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)


def test_core_imports_without_torch() -> None:
    r = run_blocked(
        """
        import slimrt, slimrt.runtime, slimrt.schema, slimrt.artifact, slimrt.backends, slimrt.fingerprint
        import slimrt.runtime.measure, slimrt.errors, slimrt.io, slimrt.bench, slimrt.testing, slimrt.plot
        from slimrt import SlimRuntime
        from slimrt.backends import available_backends
        from slimrt.bench import cuda_devices, load_device_profile, run_device_checks
        available_backends("cpu")
        cuda_devices()  # the bench's GPU probe needs no torch
        run_device_checks(load_device_profile("cpu"))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorrt", "matplotlib"))
        assert not heavy, heavy
        print("ok", SlimRuntime.__name__)
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok SlimRuntime"


def test_runtime_serves_an_artifact_without_torch(synthetic_artifact: Path) -> None:
    r = run_blocked(
        f"""
        import numpy as np
        from slimrt import SlimRuntime
        from slimrt.backends import available_backends
        assert available_backends("cpu")["torch"] is None or "torch" in available_backends("cpu")["torch"]
        with SlimRuntime({str(synthetic_artifact)!r}, budget_ms=50, threads=1, measure_runs=10) as rt:
            y = rt(np.zeros((2, 3, 16, 16), np.float32))
        assert y.shape == (2, 10)
        assert "torch" not in sys.modules
        print("served", rt.stats().total_calls)
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "served 1"


def test_cli_help_imports_nothing_heavy() -> None:
    r = run_blocked(
        """
        import slimrt.cli.app
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorrt", "matplotlib", "onnxruntime"))
        assert not heavy, heavy
        print("ok")
        """
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode != 0,
                    reason="torch is not installed (training code needs it)")
def test_train_does_not_import_exporters() -> None:
    code = "import sys, slimrt.train; assert 'slimrt.exporters' not in sys.modules, 'train imports exporters'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_the_blocker_really_blocks() -> None:
    r = run_blocked("import torch")
    assert r.returncode != 0 and "blocked by the import-rule test" in r.stderr
