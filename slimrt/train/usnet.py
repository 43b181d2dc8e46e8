"""Moved to :mod:`slimrt.train.methods.usnet` (the shared helpers to :mod:`slimrt.train.methods.base`); this alias
keeps old imports working until callers are updated."""

from slimrt.train.methods.base import BaselineReport, default_targets, evaluate_specs, match_macs
from slimrt.train.methods.usnet import *  # noqa: F403
from slimrt.train.methods.usnet import __all__ as _moved

__all__ = [*_moved, "BaselineReport", "default_targets", "evaluate_specs", "match_macs"]
