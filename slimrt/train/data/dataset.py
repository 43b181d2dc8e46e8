"""The :class:`Dataset` (normalized in-memory tensors, train / val / test) and :func:`load_dataset`.

Images are scaled to [0, 1] (integer pixels / 255) and normalized per channel with the dataset's mean
and std; that same normalization travels with the checkpoint and the exported artifact. A validation
split is carved from the training set (deterministic by seed) and drives search decisions; the test
set is only used for reported numbers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimrt.errors import DataError
from slimrt.train.data.augment import batches
from slimrt.train.data.sources import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    HOW_TO_GET,
    _search,
    find_fashion_mnist,
    load_npz,
    make_synthetic,
    read_fashion_mnist,
)

__all__ = ["Dataset", "load_dataset"]

log = logging.getLogger(__name__)

_SYNTHETIC = re.compile(r"^synthetic(?:-(\d+)x(\d+)x(\d+))?$")


@dataclass
class Dataset:
    """Normalized NCHW float32 images and int64 labels for the train / val / test splits."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_shape: tuple[int, int, int]
    num_classes: int
    preprocess: dict[str, Any] | None = None  # image folders: how files became tensors (slimrt.train.imagefolder)
    resized_crop: tuple[tuple[float, float], tuple[float, float]] | None = None
    """Training augmentation: ``(scale, ratio)`` of a random-resized-crop (image folders); None: pad-and-crop."""

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            x, y = self.split(split)
            if tuple(x.shape[1:]) != tuple(self.input_shape) or x.shape[0] != y.shape[0]:
                raise DataError(
                    f"{self.name}: {split} images {tuple(x.shape)} / labels {tuple(y.shape)} do not match "
                    f"input shape {self.input_shape}"
                )

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``"train"``, ``"val"`` or ``"test"``."""
        if which not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {which!r}")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    @property
    def fill(self) -> tuple[float, ...]:
        """Normalized value of a black (0) pixel per channel: the padding value for augmentation."""
        return tuple(-m / s for m, s in zip(self.mean, self.std, strict=True))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map images in [0, 1] (NCHW) to this dataset's normalized space."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
        return (x.float() - mean) / std

    def batches(
        self, split: str, batch_size: int, *, shuffle: bool = False, augment: bool = False,
        generator: torch.Generator | None = None, drop_last: bool = False, flip: bool = True,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
        """:func:`batches` over one split: augmented with :attr:`resized_crop` when set, else pad-and-crop padded
        with :attr:`fill`; ``flip`` adds random horizontal flips to either."""
        x, y = self.split(split)
        return batches(
            x, y, batch_size, shuffle=shuffle, augment=augment, generator=generator, drop_last=drop_last,
            fill=self.fill, flip=flip, resized_crop=self.resized_crop,
        )  # fmt: skip

    def augmentation(self, augment: bool = True, flip: bool = True) -> dict[str, Any]:
        """What :meth:`batches` does to training batches with these settings (recorded in checkpoints)."""
        if not augment:
            return {"kind": "none"}
        if self.resized_crop is not None:
            scale, ratio = self.resized_crop
            return {"kind": "random-resized-crop", "scale": list(scale), "ratio": list(ratio), "flip": flip}
        return {"kind": "pad-and-crop", "pad": 4 if min(self.input_shape[1:]) >= 32 else 2, "flip": flip}

    def describe(self) -> str:
        """One line: name, split sizes, input shape, classes."""
        return (
            f"{self.name}: train {len(self.y_train)}, val {len(self.y_val)}, test {len(self.y_test)}, "
            f"input {'x'.join(map(str, self.input_shape))}, {self.num_classes} classes"
        )


# ------------------------------------------------------------------------------------------------------ load_dataset


def load_dataset(
    name: str,
    root: str | Path | None = None,
    val_size: int | None = None,
    limit_train: int | None = None,
    seed: int = 0,
    image_options: dict[str, Any] | None = None,
) -> Dataset:
    """Load a dataset as normalized in-memory tensors with a validation split carved from the training set.

    Args:
        name: ``"fashion-mnist"``, a folder of Fashion-MNIST IDX files, ``"synthetic"`` / ``"synthetic-CxHxW"``, or the
            path of an ``.npz`` holding ``x_train, y_train, x_test, y_test`` (NCHW / NHWC / NHW, uint8 or float).
        root: folder holding Fashion-MNIST (``--data``); see :func:`find_fashion_mnist`.
        val_size: validation images taken from the training set; None: 5000 for Fashion-MNIST, 10% otherwise.
        limit_train: keep only the first N training images (after the validation split).
        seed: seed of the validation split (and of the synthetic data).
        image_options: for a folder of class sub-folders of images, fields of
            :class:`~slimrt.train.imagefolder.ImageFolderOptions` (``input_size``, ``grayscale``, ``mean``, ...).

    Raises:
        DataError: unknown name, files missing or unreadable, or split sizes that do not fit.
    """
    from slimrt.train.imagefolder import is_image_folder, load_image_folder, normalization  # imports this package

    synth = _SYNTHETIC.match(name)
    folder = Path(name).expanduser()
    image_info = None
    if folder.is_dir() and _search(folder)[0] is None and is_image_folder(folder):  # class folders of images
        x_tr, y_tr, x_te, y_te, image_info = load_image_folder(folder, image_options, seed)
        mean, std = None, None
        label, default_val = str(folder.resolve()), None
    elif folder.is_dir():  # `--data DIR`: a folder of Fashion-MNIST IDX files
        name, root = "fashion-mnist", folder
    elif "/" in name and not name.endswith(".npz"):
        raise DataError(f"dataset folder {folder} does not exist. {HOW_TO_GET}")
    if image_info is not None:
        pass
    elif name.lower() in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        x_tr, y_tr, x_te, y_te = read_fashion_mnist(find_fashion_mnist(root))
        x_tr, x_te = x_tr[:, None], x_te[:, None]
        mean, std = FASHION_MNIST_MEAN, FASHION_MNIST_STD
        label, default_val = "fashion-mnist", 5000
    elif synth:
        shape = tuple(int(v) for v in synth.groups()) if synth.group(1) else (1, 16, 16)
        x_tr, y_tr, x_te, y_te = make_synthetic(shape=shape, seed=seed)
        mean, std = None, None
        label, default_val = name, None
    elif name.endswith(".npz") or Path(name).is_file():
        path = Path(name).expanduser()
        if not path.is_file():
            raise DataError(f"dataset file {path} does not exist")
        x_tr, y_tr, x_te, y_te = load_npz(path)
        mean, std = None, None
        label, default_val = path.name, None
    else:
        raise DataError(
            f"unknown dataset {name!r}: use 'fashion-mnist', a folder of Fashion-MNIST IDX files, 'synthetic' "
            "(or 'synthetic-CxHxW'), or a path to an .npz with x_train, y_train, x_test, y_test"
        )

    n = len(x_tr)
    if val_size is not None:
        val = val_size
    else:
        val = default_val if default_val is not None else max(1, n // 10)
    if not 0 <= val < n:
        raise DataError(f"{label}: val_size must be in [0, {n - 1}] (the training set has {n} images), got {val}")
    if limit_train is not None and limit_train < 1:
        raise DataError(f"limit_train must be >= 1, got {limit_train}")

    x_tr_t = _unit_tensor(x_tr)
    x_te_t = _unit_tensor(x_te)
    if image_info is not None:
        mean, std = normalization(x_tr_t, image_info)
    if mean is None or std is None:
        mean = tuple(float(v) for v in x_tr_t.mean(dim=(0, 2, 3)))
        std = tuple(max(float(v), 1e-6) for v in x_tr_t.std(dim=(0, 2, 3)))
    y_tr_t = torch.from_numpy(np.asarray(y_tr, dtype=np.int64))
    y_te_t = torch.from_numpy(np.asarray(y_te, dtype=np.int64))

    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx = perm[:val].sort().values
    train_idx = perm[val:].sort().values
    if limit_train is not None:
        train_idx = train_idx[:limit_train]

    ds = Dataset(
        name=label,
        x_train=_normalize(x_tr_t[train_idx], mean, std),
        y_train=y_tr_t[train_idx],
        x_val=_normalize(x_tr_t[val_idx], mean, std),
        y_val=y_tr_t[val_idx],
        x_test=_normalize(x_te_t, mean, std),
        y_test=y_te_t,
        mean=tuple(mean),
        std=tuple(std),
        input_shape=tuple(int(v) for v in x_tr_t.shape[1:]),  # type: ignore[arg-type]
        num_classes=len(image_info["classes"]) if image_info is not None
        else int(max(int(y_tr_t.max()), int(y_te_t.max()) if len(y_te_t) else 0) + 1),
        preprocess=image_info,
        resized_crop=None if image_info is None
        else (tuple(image_info["crop_scale"]), tuple(image_info["crop_ratio"])),  # type: ignore[arg-type]
    )
    log.info("loaded %s", ds.describe())
    return ds


def _unit_tensor(x: np.ndarray) -> torch.Tensor:
    if x.dtype == np.uint8:
        return torch.from_numpy(x).float().div_(255.0)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous()
