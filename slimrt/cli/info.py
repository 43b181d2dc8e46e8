"""``slimrt info``: placeholder until its issue lands (replaced by the owner of that command)."""

from __future__ import annotations

from slimrt.errors import SlimrtError


def info() -> None:
    """Not implemented yet."""
    raise SlimrtError("slimrt info is not implemented yet")
