"""Shared fixtures of the train tests. Being a conftest without ``__init__.py``, it also puts ``tests/train`` on
``sys.path`` (pytest's default import mode), so tests in sub-folders import the tiny networks of ``nets.py`` too."""

from __future__ import annotations

import pytest

from slimrt.train.data import load_dataset


@pytest.fixture(scope="module")
def data():
    """Synthetic 1x16x16 images, 10 classes: 512 training and 200 validation images (a module may override it)."""
    return load_dataset("synthetic", val_size=200, limit_train=512, seed=0)
