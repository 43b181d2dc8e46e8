"""The wheel carries the layout the design promises: exporters/ as slimrt.exporters, profiles/ as package data."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_exporters_and_profiles(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("slimrt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "slimrt/exporters/__init__.py" in names
    assert "slimrt/exporters/onnx.py" in names
    for profile in ("cpu", "cuda", "jetson"):
        assert f"slimrt/profiles/{profile}.toml" in names
    assert "slimrt/runtime/__init__.py" in names and "slimrt/schema.py" in names
    assert {"slimrt/bench/__init__.py", "slimrt/bench/measure.py", "slimrt/testing.py", "slimrt/io.py"} <= names
    assert not any(n.startswith(("exporters/", "profiles/", "tests/")) for n in names)
    # every module of the source tree is in the wheel (a new sub-package missing from pyproject would be left out)
    source = {f"slimrt/{p.relative_to(ROOT / 'slimrt').as_posix()}" for p in (ROOT / "slimrt").rglob("*.py")}
    assert not sorted(source - names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "slimrt = slimrt.cli.app:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_installed_package_maps_exporters_and_profiles():
    import importlib.resources

    import slimrt.exporters

    assert Path(slimrt.exporters.__file__).resolve().parent == ROOT / "exporters"
    files = {p.name for p in importlib.resources.files("slimrt.profiles").iterdir()}
    assert {"cpu.toml", "cuda.toml", "jetson.toml"} <= files


def test_tomli_is_a_dependency_where_tomllib_is_missing():
    """The code falls back to ``tomli`` below Python 3.11, so pyproject must require it there."""
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    tomli = [d for d in deps if d.replace(" ", "").startswith("tomli")]
    assert tomli and "python_version<'3.11'" in tomli[0].replace(" ", "").replace('"', "'"), deps
