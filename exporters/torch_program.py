"""``--torch``: each sub-net as a ``torch.export`` program (``torch/<name>.pt2``), for the runtime's torch backend.

A ``.pt2`` holds the graph and the sub-net's own (sliced) weights; ``torch.export.load`` reads it
without unpickling arbitrary code.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["save_program", "load_program"]


def save_program(module: torch.nn.Module, example: torch.Tensor, path: str | Path, *, dynamic_batch: bool) -> Path:
    """Export ``module`` (eval mode) with ``torch.export`` and save it to ``path``."""
    import torch

    x = example
    kwargs: dict = {}
    if dynamic_batch:
        if x.shape[0] < 2:
            x = torch.cat([x, x], dim=0)
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.export.export(module.eval(), (x,), **kwargs)
        torch.export.save(prog, str(path))
    return path


def load_program(path: str | Path) -> torch.nn.Module:
    """Load a saved program as a callable module."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.load(str(path)).module()
