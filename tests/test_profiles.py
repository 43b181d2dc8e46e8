"""Device profiles: every shipped TOML validates; bad files give a ProfileError naming the file and the field."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from slimrt.bench import list_device_profiles, load_device_profile
from slimrt.errors import ProfileError
from slimrt.schema import DeviceProfile

SHIPPED = ("cpu", "cuda", "jetson")


def _shipped_text(name: str) -> str:
    return (importlib.resources.files("slimrt.profiles") / f"{name}.toml").read_text(encoding="utf-8")


def test_shipped_profiles_are_listed_from_package_data() -> None:
    assert set(SHIPPED) <= set(list_device_profiles())


@pytest.mark.parametrize("name", list_device_profiles())
def test_every_shipped_profile_validates(name: str) -> None:
    prof = load_device_profile(name)
    assert isinstance(prof, DeviceProfile)
    assert prof.name == name
    # Every key written in the TOML is a DeviceProfile field (extra=forbid would have raised otherwise) and
    # survives validation unchanged.
    raw = tomllib.loads(_shipped_text(name))
    assert set(raw) <= set(DeviceProfile.model_fields)
    for key, value in raw.items():
        assert getattr(prof, key) == value, key


def test_shipped_profiles_say_what_the_issue_asks() -> None:
    cpu, cuda, jetson = (load_device_profile(n) for n in SHIPPED)
    assert (cpu.device, cpu.backend, cpu.providers, cpu.precision) == (
        "cpu", "onnxruntime", ["CPUExecutionProvider"], "fp32")
    assert cpu.threads is None  # the backend chooses
    assert cuda.device == "cuda" and cuda.fallback_backend == "torch" and "cuda_available" in cuda.checks
    assert cuda.providers[0] == "TensorrtExecutionProvider"
    assert jetson.backend == "tensorrt" and jetson.precision == "fp16" and jetson.fallback_backend == "onnxruntime"
    assert {"jetson_power_mode", "jetson_clocks", "tensorrt_available"} <= set(jetson.checks)
    for p in (cpu, cuda, jetson):
        assert p.quantiles == [0.5, 0.9, 0.95, 0.99]
        assert p.batch_sizes == [1]


def test_profile_loaded_from_a_path(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text(_shipped_text("cpu").replace("# threads = 2", "threads = 2"), encoding="utf-8")
    prof = load_device_profile(f)
    assert prof.threads == 2
    assert load_device_profile(str(f)).threads == 2


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ('frobnicate = 3\n', "frobnicate"),  # unknown key
        ('quantiles = [0.5, 1.5]\n', "quantiles"),  # quantile outside (0, 1)
        ('runs = "many"\n', "runs"),  # wrong type
        ('threads = 0\n', "threads"),  # below the minimum
        ('device = "tpu"\n', "device"),  # not a known device
        ('checks = ["disk_space"]\n', "checks"),  # unknown check
    ],
)
def test_bad_profile_names_file_and_field(tmp_path: Path, edit: str, field: str) -> None:
    base = tomllib.loads(_shipped_text("cpu"))
    lines = [f"{k} = {_toml_value(v)}" for k, v in base.items() if k != field]
    f = tmp_path / "broken-profile.toml"
    f.write_text("\n".join(lines) + "\n" + edit, encoding="utf-8")
    with pytest.raises(ProfileError) as exc:
        load_device_profile(f)
    msg = str(exc.value)
    assert "broken-profile.toml" in msg
    assert field in msg


def _toml_value(v: object) -> str:
    if isinstance(v, str):
        return '"' + v.replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def test_invalid_toml_syntax_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "syntax.toml"
    f.write_text('name = "x"\ndevice = \n', encoding="utf-8")
    with pytest.raises(ProfileError, match="syntax.toml.*not valid TOML"):
        load_device_profile(f)


def test_missing_required_field_is_named(tmp_path: Path) -> None:
    f = tmp_path / "nodevice.toml"
    f.write_text('name = "x"\n', encoding="utf-8")
    with pytest.raises(ProfileError, match=r"nodevice\.toml.*'device'"):
        load_device_profile(f)


def test_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ProfileError) as exc:
        load_device_profile("no-such-device")
    assert all(n in str(exc.value) for n in SHIPPED)
