"""``slimrt bench``: placeholder until its issue lands (replaced by the owner of that command)."""

from __future__ import annotations

from slimrt.errors import SlimrtError


def bench() -> None:
    """Not implemented yet."""
    raise SlimrtError("slimrt bench is not implemented yet")
