"""Import rules (GUIDE.md): schema, artifact, runtime, backends, bench, io and testing never import torch;
`slimrt --help` stays light; train never imports exporters. Checked in fresh interpreters with torch made
unimportable (every submodule of the torch-free packages is imported), and by scanning the source with ``ast``
(lazy imports inside functions included for train -> exporters)."""

from __future__ import annotations

import ast
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


ROOT = Path(__file__).resolve().parents[1]
TORCH_FREE_PACKAGES = ("slimrt.runtime", "slimrt.backends", "slimrt.bench")
TORCH_FREE_MODULES = ("slimrt", "slimrt.schema", "slimrt.artifact", "slimrt.fingerprint", "slimrt.errors",
                      "slimrt.selection", "slimrt.progress", "slimrt.io", "slimrt.testing")  # fmt: skip


def _source(module: str) -> Path:
    base = ROOT / Path(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _torch_free_files() -> list[Path]:
    files = [_source(m) for m in TORCH_FREE_MODULES]
    for pkg in TORCH_FREE_PACKAGES:
        files += sorted(_source(pkg).parent.rglob("*.py"))
    return files


def _imports(tree: ast.AST, top_level_only: bool) -> list[tuple[int, str]]:
    """``(line, module)`` of every import; with ``top_level_only`` not those inside functions (lazy imports)."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.extend([(child.lineno, child.module)])
            visit(child)

    visit(tree)
    return found


def _eager_heavy_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.relative_to(ROOT)}:{line} imports {mod}" for line, mod in _imports(tree, top_level_only=True)
            if mod.split(".")[0] in ("torch", "tensorrt", "matplotlib")]  # fmt: skip


def test_torch_free_sources_import_torch_only_lazily() -> None:
    files = _torch_free_files()
    assert len(files) > 10 and all(f.is_file() for f in files)
    bad = [hit for f in files for hit in _eager_heavy_imports(f)]
    assert not bad, bad


def test_the_source_scan_catches_a_forbidden_import(tmp_path: Path) -> None:
    victim = tmp_path / "slimrt" / "runtime" / "victim.py"
    victim.parent.mkdir(parents=True)
    victim.write_text("import numpy\nif True:\n    import torch.nn\n\ndef lazy():\n    import torch\n")
    tree = ast.parse(victim.read_text())
    assert [m for _, m in _imports(tree, top_level_only=True)] == ["numpy", "torch.nn"]
    assert [m for _, m in _imports(tree, top_level_only=False)] == ["numpy", "torch.nn", "torch"]


def test_every_torch_free_submodule_imports_without_torch() -> None:
    r = run_blocked(
        f"""
        import importlib, pkgutil
        names = list({TORCH_FREE_MODULES!r})
        for pkg in {TORCH_FREE_PACKAGES!r}:
            mod = importlib.import_module(pkg)
            names += [m.name for m in pkgutil.walk_packages(mod.__path__, pkg + ".")]
        for name in names:
            importlib.import_module(name)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "tensorrt", "matplotlib"))
        assert not heavy, heavy
        print(len(names))
        """
    )
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) >= 12


def test_train_never_imports_exporters_even_lazily() -> None:
    hits = []
    for path in sorted((ROOT / "slimrt" / "train").rglob("*.py")):
        for line, mod in _imports(ast.parse(path.read_text(), str(path)), top_level_only=False):
            if mod.split(".")[0] == "exporters" or mod.startswith("slimrt.exporters"):
                hits.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not hits, hits


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
