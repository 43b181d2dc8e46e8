"""Datasets held as in-memory tensors: :mod:`~slimrt.train.data.sources` (Fashion-MNIST, ``.npz``, synthetic),
:mod:`~slimrt.train.data.dataset` (normalization, splits, :func:`load_dataset`) and
:mod:`~slimrt.train.data.augment` (batch iteration with vectorised augmentation)."""

from __future__ import annotations

from slimrt.train.data.augment import augment_batch, batches, random_resized_crop
from slimrt.train.data.dataset import Dataset, load_dataset
from slimrt.train.data.sources import (
    DATA_ENV,
    FASHION_MNIST_FILES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    HOW_TO_GET,
    find_fashion_mnist,
    make_synthetic,
    read_idx,
)

__all__ = [
    "Dataset",
    "load_dataset",
    "batches",
    "augment_batch",
    "random_resized_crop",
    "find_fashion_mnist",
    "read_idx",
    "make_synthetic",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "DATA_ENV",
    "HOW_TO_GET",
]
