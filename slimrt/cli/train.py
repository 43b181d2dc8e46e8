"""``slimrt train``: placeholder until its issue lands (replaced by the owner of that command)."""

from __future__ import annotations

from slimrt.errors import SlimrtError


def train() -> None:
    """Not implemented yet."""
    raise SlimrtError("slimrt train is not implemented yet")
