"""Load device profiles (``profiles/<name>.toml``, shipped as package data ``slimrt.profiles``)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from slimrt.errors import ProfileError
from slimrt.schema import DeviceProfile

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as _toml  # type: ignore[no-redef]

__all__ = ["load_device_profile", "list_device_profiles", "parse_device_profile"]

_PACKAGE = "slimrt.profiles"


def _shipped() -> dict[str, Any]:
    """Map of shipped profile name -> traversable resource."""
    root = importlib.resources.files(_PACKAGE)
    return {p.name[: -len(".toml")]: p for p in root.iterdir() if p.name.endswith(".toml") and p.is_file()}


def list_device_profiles() -> list[str]:
    """Names of the device profiles shipped with slimrt, sorted."""
    return sorted(_shipped())


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(x) for x in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key {field!r} (allowed: {', '.join(DeviceProfile.model_fields)})")
        else:
            parts.append(f"field {field!r}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(parts)


def parse_device_profile(text: str, source: str) -> DeviceProfile:
    """Parse and validate the TOML ``text`` of a device profile; ``source`` names it in errors.

    Raises:
        ProfileError: naming ``source`` and the offending field when the TOML or a value is invalid.
    """
    try:
        data = _toml.loads(text)
    except _toml.TOMLDecodeError as e:
        raise ProfileError(f"device profile {source} is not valid TOML: {e}") from e
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as e:
        raise ProfileError(f"device profile {source} is invalid: {_describe(e)}") from e


def load_device_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a shipped profile by name (``"cpu"``, ``"cuda"``, ``"jetson"``) or a TOML file by path.

    Raises:
        ProfileError: the profile does not exist or is invalid (the message names the file and the field).
    """
    s = str(name_or_path)
    shipped = _shipped()
    if isinstance(name_or_path, str) and s in shipped:
        res = shipped[s]
        return parse_device_profile(res.read_text(encoding="utf-8"), f"{s!r} ({_PACKAGE}/{res.name})")
    path = Path(s).expanduser()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ProfileError(f"cannot read device profile {path}: {e}") from e
        return parse_device_profile(text, str(path))
    raise ProfileError(
        f"no device profile {s!r}: expected one of {list_device_profiles()} or the path of a TOML file"
    )
