"""Training methods side by side behind one interface (:class:`TrainingMethod`) and a small registry.

Built in: ``progressive`` (:mod:`~slimrt.train.methods.progressive`), ``usnet``
(:mod:`~slimrt.train.methods.usnet`) and ``independent`` (:mod:`~slimrt.train.methods.independent`). A new method is
one module holding a :class:`TrainingMethod` subclass decorated with :func:`register_method`; the machinery it shares
(loops, dynamic network, graph analysis, data, checkpoints) stays in :mod:`slimrt.train`.
"""

from __future__ import annotations

from slimrt.train.methods.base import (
    BaselineReport,
    DDPArgs,
    MethodContext,
    MethodReport,
    TrainingMethod,
    available_methods,
    evaluate_specs,
    get_method,
    register_method,
)

__all__ = [
    "BaselineReport",
    "DDPArgs",
    "MethodContext",
    "MethodReport",
    "TrainingMethod",
    "available_methods",
    "evaluate_specs",
    "get_method",
    "register_method",
]
