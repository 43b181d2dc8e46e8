"""Datasets held as in-memory tensors: Fashion-MNIST (IDX gzip), a generic ``.npz``, and a synthetic set.

Images are scaled to [0, 1] (integer pixels / 255) and normalized per channel with the dataset's mean
and std; that same normalization travels with the checkpoint and the exported artifact. A validation
split is carved from the training set (deterministic by seed) and drives search decisions; the test
set is only used for reported numbers. :func:`batches` iterates over tensors with vectorised
pad-and-crop and horizontal-flip augmentation.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import re
import shutil
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimrt.errors import DataError
from slimrt.train.imagefolder import is_image_folder, load_image_folder, normalization

__all__ = [
    "Dataset",
    "load_dataset",
    "batches",
    "augment_batch",
    "find_fashion_mnist",
    "read_idx",
    "make_synthetic",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "DATA_ENV",
]

log = logging.getLogger(__name__)

DATA_ENV = "SLIMRT_DATA"
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIRS = ("/usr/share/datasets/fashion-mnist", "/usr/share/dataset-fashion-mnist")
HOW_TO_GET = (
    "Get Fashion-MNIST one of these ways: (1) Debian/Ubuntu as root: `apt-get install -y dataset-fashion-mnist`; "
    "(2) anywhere: download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
    "t10k-labels-idx1-ubyte.gz from https://github.com/zalandoresearch/fashion-mnist (folder data/fashion) into one "
    f"folder, then set {DATA_ENV}=/that/folder or pass --data /that/folder."
)
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
        generator: torch.Generator | None = None, drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
        """:func:`batches` over one split, padding augmented crops with :attr:`fill`."""
        x, y = self.split(split)
        return batches(
            x, y, batch_size, shuffle=shuffle, augment=augment, generator=generator, drop_last=drop_last,
            fill=self.fill,
        )  # fmt: skip

    def describe(self) -> str:
        """One line: name, split sizes, input shape, classes."""
        return (
            f"{self.name}: train {len(self.y_train)}, val {len(self.y_val)}, test {len(self.y_test)}, "
            f"input {'x'.join(map(str, self.input_shape))}, {self.num_classes} classes"
        )


# --------------------------------------------------------------------------------------------- IDX / Fashion-MNIST


def read_idx(path: str | Path, expect_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) holding unsigned bytes.

    Raises:
        DataError: naming the file when it is unreadable, truncated, or not a uint8 IDX file.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path} is truncated or corrupt ({e}); delete it and download it again") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from e
    if len(data) < 4:
        raise DataError(f"{path} is truncated: {len(data)} bytes, not even an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
        raise DataError(
            f"{path} is not a uint8 IDX file (magic {data[:4].hex()}; expected 0000080N, e.g. 00000803 for images)"
        )
    if expect_ndim is not None and ndim != expect_ndim:
        raise DataError(f"{path} holds a {ndim}-d array, expected {expect_ndim}-d")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated inside its IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{path} is {what}: header {list(dims)} needs {expected} bytes, found {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _files_in(directory: Path) -> dict[str, Path] | None:
    found = {}
    for key, base in FASHION_MNIST_FILES.items():
        for candidate in (directory / f"{base}.gz", directory / base):
            if candidate.is_file():
                found[key] = candidate
                break
    return found or None


def _search(root: Path) -> tuple[dict[str, Path] | None, list[Path]]:
    """Look in ``root``, ``root/fashion-mnist`` and ``root/FashionMNIST/raw`` (torchvision's layout)."""
    tried = [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    partial = None
    for d in tried:
        files = _files_in(d)
        if files and len(files) == len(FASHION_MNIST_FILES):
            return files, tried
        partial = partial or files
    return partial, tried


def _dpkg_dir() -> Path | None:
    if shutil.which("dpkg") is None:
        return None
    try:
        out = subprocess.run(
            ["dpkg", "-L", DEBIAN_PACKAGE], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.strip().endswith(f"{FASHION_MNIST_FILES['train_images']}.gz"):
            return Path(line.strip()).parent
    return None


def find_fashion_mnist(root: str | Path | None = None) -> dict[str, Path]:
    """Locate the four Fashion-MNIST files: ``root`` (``--data``), then ``$SLIMRT_DATA``, then the Debian package.

    An explicit ``root`` or ``$SLIMRT_DATA`` that does not hold the files is an error (no silent fallback).

    Returns:
        Paths keyed ``train_images``, ``train_labels``, ``test_images``, ``test_labels``.

    Raises:
        DataError: the files are not found; the message says how to get them.
    """
    explicit: list[tuple[str, str]] = []
    if root is not None:
        explicit.append(("--data", str(root)))
    elif os.environ.get(DATA_ENV):
        explicit.append((f"${DATA_ENV}", os.environ[DATA_ENV]))
    for source, value in explicit:
        base = Path(value).expanduser()
        if not base.is_dir():
            raise DataError(f"Fashion-MNIST folder {base} (from {source}) does not exist. {HOW_TO_GET}")
        files, tried = _search(base)
        if files and len(files) == len(FASHION_MNIST_FILES):
            return files
        missing = [f"{b}.gz" for k, b in FASHION_MNIST_FILES.items() if not files or k not in files]
        raise DataError(
            f"Fashion-MNIST not found in {base} (from {source}): missing {', '.join(missing)} "
            f"(looked in {', '.join(map(str, tried))}). {HOW_TO_GET}"
        )
    dirs = [Path(d) for d in DEBIAN_DIRS]
    if (pkg := _dpkg_dir()) is not None:
        dirs.insert(0, pkg)
    for d in dirs:
        files = _files_in(d)
        if files and len(files) == len(FASHION_MNIST_FILES):
            return files
    raise DataError(
        f"Fashion-MNIST not found: no --data folder given, ${DATA_ENV} unset, and the Debian package "
        f"{DEBIAN_PACKAGE} is not installed (looked in {', '.join(map(str, dirs))}). {HOW_TO_GET}"
    )


@functools.lru_cache(maxsize=2)
def _read_fashion_cached(key: tuple[tuple[str, str, int, int], ...]) -> tuple[np.ndarray, ...]:
    paths = {name: Path(p) for name, p, _, _ in key}
    x_tr = read_idx(paths["train_images"], 3)
    y_tr = read_idx(paths["train_labels"], 1)
    x_te = read_idx(paths["test_images"], 3)
    y_te = read_idx(paths["test_labels"], 1)
    for x, y, xs in ((x_tr, y_tr, "train_images"), (x_te, y_te, "test_images")):
        if len(x) != len(y):
            raise DataError(f"{paths[xs]} holds {len(x)} images but its labels file holds {len(y)} labels")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(f"train images are {x_tr.shape[1:]} but test images are {x_te.shape[1:]}")
    return x_tr, y_tr, x_te, y_te


def _read_fashion(files: dict[str, Path]) -> tuple[np.ndarray, ...]:
    key = tuple((name, str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for name, p in sorted(files.items()))
    return _read_fashion_cached(key)


# --------------------------------------------------------------------------------------------------- npz / synthetic


def _to_nchw(x: np.ndarray, source: str, key: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise DataError(f"{source}: {key} must be N x H x W, N x C x H x W or N x H x W x C, got shape {x.shape}")
    if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _to_unit_float(x: np.ndarray, source: str, key: str) -> np.ndarray:
    if x.dtype == np.uint8 or np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / 255.0
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32)
    raise DataError(f"{source}: {key} has dtype {x.dtype}; expected uint8 or float images")


def _labels(y: np.ndarray, n: int, source: str, key: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: {key} must be a 1-d integer array of class ids, got {y.dtype} {y.shape}")
    if len(y) != n:
        raise DataError(f"{source}: {key} holds {len(y)} labels for {n} images")
    if len(y) and y.min() < 0:
        raise DataError(f"{source}: {key} has negative class ids")
    return y.astype(np.int64)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    required = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in required if k not in z.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)} (it has {', '.join(z.files) or 'no arrays'})")
            arrays = {k: z[k] for k in required}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path} as an .npz of arrays (truncated, corrupt or pickled objects): {e}") from e
    x_tr = _to_unit_float(_to_nchw(arrays["x_train"], str(path), "x_train"), str(path), "x_train")
    x_te = _to_unit_float(_to_nchw(arrays["x_test"], str(path), "x_test"), str(path), "x_test")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(f"{path}: x_train images are {x_tr.shape[1:]} but x_test images are {x_te.shape[1:]}")
    y_tr = _labels(arrays["y_train"], len(x_tr), str(path), "y_train")
    y_te = _labels(arrays["y_test"], len(x_te), str(path), "y_test")
    return x_tr, y_tr, x_te, y_te


def make_synthetic(
    n_train: int = 2000,
    n_test: int = 500,
    shape: Sequence[int] = (1, 16, 16),
    num_classes: int = 10,
    noise: float = 0.25,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A small separable image set: each class is a fixed blocky random pattern, samples add pixel noise.

    Deterministic by ``seed``. Returns uint8 ``x_train, y_train, x_test, y_test`` (NCHW images).
    """
    c, h, w = (int(v) for v in shape)
    rng = np.random.default_rng(seed)
    bh, bw = max(1, h // 4), max(1, w // 4)
    coarse = rng.uniform(0.0, 1.0, size=(num_classes, c, -(-h // bh), -(-w // bw)))
    templates = coarse.repeat(bh, axis=2).repeat(bw, axis=3)[:, :, :h, :w]

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, num_classes, size=n)
        scale = rng.uniform(0.7, 1.0, size=(n, 1, 1, 1))
        x = templates[y] * scale + rng.normal(0.0, noise, size=(n, c, h, w))
        return (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8), y.astype(np.int64)

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return x_tr, y_tr, x_te, y_te


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
        x_tr, y_tr, x_te, y_te = _read_fashion(find_fashion_mnist(root))
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
        x_tr, y_tr, x_te, y_te = _load_npz(path)
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


# ------------------------------------------------------------------------------------------------------- iteration


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    pad: int | None = None,
    flip: bool = True,
    fill: float | Sequence[float] = 0.0,
) -> torch.Tensor:
    """Random pad-and-crop and horizontal flip of a whole NCHW batch at once (one gather, no python loop).

    Args:
        x: images, N x C x H x W.
        generator: CPU random generator (None: torch's global one).
        pad: pixels of padding before cropping back; None: 4 for images of 32 px or more, else 2.
        flip: flip each image left-right with probability 1/2.
        fill: padding value, a scalar or one per channel (use ``Dataset.fill`` for black).
    """
    b, c, h, w = x.shape
    if pad is None:
        pad = 4 if min(h, w) >= 32 else 2
    if pad > 0:
        fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1)
        padded = x.new_empty(b, c, h + 2 * pad, w + 2 * pad)
        padded[:] = fill_t.view(1, -1, 1, 1) if fill_t.numel() > 1 else fill_t
        padded[:, :, pad : pad + h, pad : pad + w] = x
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    else:
        padded = x
        oy = ox = torch.zeros(b, dtype=torch.long)
    rows = oy[:, None] + torch.arange(h)
    cols = ox[:, None] + torch.arange(w)
    if flip:
        flipped = torch.rand(b, generator=generator) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    dev = x.device
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return padded[bi, ci, rows.to(dev)[:, None, :, None], cols.to(dev)[:, None, None, :]]


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    shuffle: bool = False,
    augment: bool = False,
    generator: torch.Generator | None = None,
    *,
    drop_last: bool = False,
    pad: int | None = None,
    flip: bool = True,
    fill: float | Sequence[float] = 0.0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Iterate over ``(x, y)`` in mini-batches, optionally shuffled and augmented (see :func:`augment_batch`).

    Each call is a fresh pass; pass a seeded ``generator`` for a reproducible order and augmentation.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    n = len(x)
    order = torch.randperm(n, generator=generator) if shuffle else None
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if drop_last and stop - start < batch_size:
            break
        if order is not None:
            idx = order[start:stop].to(x.device)
            xb, yb = x[idx], y[idx.to(y.device)]
        else:
            xb, yb = x[start:stop], y[start:stop]
        if augment:
            xb = augment_batch(xb, generator, pad=pad, flip=flip, fill=fill)
        yield xb, yb
