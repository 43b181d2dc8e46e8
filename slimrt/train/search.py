"""Moved to :mod:`slimrt.train.methods.progressive`; this alias keeps old imports working until callers are updated."""

from slimrt.train.methods.progressive import *  # noqa: F401,F403
from slimrt.train.methods.progressive import __all__  # noqa: F401
