"""``slimrt export``: placeholder until its issue lands (replaced by the owner of that command)."""

from __future__ import annotations

from slimrt.errors import SlimrtError


def export() -> None:
    """Not implemented yet."""
    raise SlimrtError("slimrt export is not implemented yet")
