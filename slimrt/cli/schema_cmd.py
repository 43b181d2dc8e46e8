"""``slimrt schema``: print the JSON Schema of slimrt's file formats."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from slimrt import schema as S

_MODELS = {
    "manifest": S.Manifest,
    "latency-profile": S.LatencyProfile,
    "device-profile": S.DeviceProfile,
    "subnet-spec": S.SubnetSpec,
}


def schema(
    name: Annotated[str, typer.Argument(help=f"Which format: {', '.join(_MODELS)}.")] = "manifest",
) -> None:
    """Print the JSON Schema of an artifact's manifest (or another slimrt format)."""
    try:
        model = _MODELS[name]
    except KeyError:
        raise typer.BadParameter(f"unknown format {name!r}; choose one of {', '.join(_MODELS)}") from None
    typer.echo(json.dumps(model.model_json_schema(), indent=2))
