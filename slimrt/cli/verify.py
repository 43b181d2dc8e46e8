"""``slimrt verify``: placeholder until its issue lands (replaced by the owner of that command)."""

from __future__ import annotations

from slimrt.errors import SlimrtError


def verify() -> None:
    """Not implemented yet."""
    raise SlimrtError("slimrt verify is not implemented yet")
