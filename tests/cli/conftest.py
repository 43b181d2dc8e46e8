"""Shared CLI fixtures: a tiny training config written as a TOML file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TINY_TRAIN: dict[str, Any] = {
    "arch_kwargs": {"widths": [8, 8, 16]}, "val_size": 200, "augment": False, "group_size": 4, "noise_steps": 8,
    "noise_batch_size": 32, "finetune_steps": 3, "calib_batches": 2, "macs_step": 0.2,
}  # fmt: skip
"""A search config small enough for a CLI test to train in seconds (a tiny ResNet-20 on synthetic data)."""


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(v) if isinstance(v, str) else repr(v)


@pytest.fixture()
def tiny_config(tmp_path: Path) -> Callable[..., Path]:
    """``tiny_config(**fields) -> path``: :data:`TINY_TRAIN` with ``fields`` changed (``None`` drops a field),
    written to ``tmp_path / "tiny.toml"``."""

    def write(**fields: Any) -> Path:
        merged = {k: v for k, v in {**TINY_TRAIN, **fields}.items() if v is not None}
        path = tmp_path / "tiny.toml"
        path.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in merged.items()))
        return path

    return write
