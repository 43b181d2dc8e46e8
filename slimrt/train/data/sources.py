"""Where images come from: Fashion-MNIST (IDX gzip files, found via ``--data``, ``$SLIMRT_DATA`` or the Debian
package), a generic ``.npz`` and a synthetic set. Readers return uint8/float numpy arrays; normalization and
splitting happen in :mod:`slimrt.train.data.dataset`.
"""

from __future__ import annotations

import functools
import gzip
import os
import shutil
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from slimrt.errors import DataError

__all__ = [
    "find_fashion_mnist",
    "read_idx",
    "read_fashion_mnist",
    "load_npz",
    "make_synthetic",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "DATA_ENV",
]

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


def read_fashion_mnist(files: dict[str, Path]) -> tuple[np.ndarray, ...]:
    """uint8 ``x_train, y_train, x_test, y_test`` from the files :func:`find_fashion_mnist` found (cached)."""
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


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train, y_train, x_test, y_test`` of an ``.npz`` as NCHW float images in [0, 1] and int64 labels."""
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

