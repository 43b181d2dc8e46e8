"""Moved to :mod:`slimrt.train.methods.independent`; this alias keeps old imports working until callers are updated."""

from slimrt.train.methods.independent import *  # noqa: F401,F403
from slimrt.train.methods.independent import __all__  # noqa: F401
