"""Run time: pick, per call, the most accurate sub-net that meets the latency budget (no torch import).

``SlimRuntime`` is the entry point; :func:`~slimrt.runtime.selector.select` is the pure selection rule;
:mod:`slimrt.runtime.adapt` holds the online slowdown estimate; :func:`measure_latency` is shared with bench.
"""

from __future__ import annotations

from slimrt.runtime.adapt import AdaptConfig, Controller, SlowdownEstimator
from slimrt.runtime.measure import measure_latency, summarize
from slimrt.runtime.runtime import BudgetInfeasibleWarning, RuntimeStats, SlimRuntime, SubnetInfo, resolve_backend
from slimrt.runtime.selector import Candidate, Selection, Selector, check_budget, select

__all__ = [
    "SlimRuntime",
    "SubnetInfo",
    "RuntimeStats",
    "BudgetInfeasibleWarning",
    "resolve_backend",
    "AdaptConfig",
    "Controller",
    "SlowdownEstimator",
    "measure_latency",
    "summarize",
    "Candidate",
    "Selection",
    "Selector",
    "check_budget",
    "select",
]
