"""Image folders: one sub-folder per class (optionally under ``train/`` and ``val/``), decoded with Pillow.

Layouts::

    photos/cat/001.jpg, photos/dog/002.png, ...           (test split carved from it, 10%, seeded)
    photos/train/cat/..., photos/val/cat/...               (``val/``, ``validation/`` or ``test/`` is the test split)

Class ids are the sorted class-folder names of the training folder; an evaluation folder naming a class the training
folder lacks is an error (never a silent wrong label). Every image is decoded once, converted to RGB or grayscale,
resized so its shorter side is ``input_size / crop_fraction`` (bilinear) and center-cropped to ``input_size``
squared, then held in memory as a tensor (the in-memory :class:`~slimrt.train.data.Dataset` design). Files are
decoded by a pool of ``workers`` threads (Pillow releases the GIL while decoding and resizing).

Training batches get a random-resized-crop (area fraction in ``crop_scale``, aspect ratio in ``crop_ratio``,
resampled back to ``input_size``) and, unless ``--no-flip``, a horizontal flip, vectorised in torch per batch
(:func:`~slimrt.train.data.augment.random_resized_crop`). The crop is taken from the stored center crop (the view
evaluation sees), not from the whole file: every split keeps one shape and one copy in memory, at the price of never
showing the outer ``1 - crop_fraction`` border. Evaluation is resize + center-crop only, deterministic. Mean and
std are given or computed from the training images. The preprocessing and training augmentation are recorded in
the checkpoint (``extra["image_folder"]``) and the manifest's input spec (``preprocess``, with mean/std/shape),
the class names in the manifest's ``labels``.

An unreadable image stops loading with a one-line error naming the file, or is skipped and counted with
``skip_bad=True`` (``--skip-bad-images``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimrt.errors import DataError
from slimrt.train.data.augment import CROP_RATIO, CROP_SCALE

__all__ = ["IMAGE_EXTENSIONS", "EVAL_FOLDERS", "ImageFolderOptions", "is_image_folder", "load_image_folder",
           "image_options", "default_workers"]  # fmt: skip

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
EVAL_FOLDERS = ("val", "validation", "test")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F", "P;L"})


@dataclass(frozen=True)
class ImageFolderOptions:
    """How images become tensors.

    Attributes:
        input_size: side of the square input; None: the first image's shorter side, at most 224.
        grayscale: one channel; None: grayscale when the first image is, RGB otherwise.
        mean: per-channel mean of [0, 1] pixels; None: computed from the training images (with std).
        std: per-channel std; None: computed.
        crop_fraction: the center crop keeps this fraction of the resized shorter side (0.875: ImageNet style).
        skip_bad: skip unreadable images (counted in the log) instead of stopping.
        test_fraction: share of the images held out as the test split when there is no ``val/`` folder.
        crop_scale: training random-resized-crop area range, fractions of the (center-cropped) image.
        crop_ratio: training random-resized-crop aspect-ratio (width / height) range.
        workers: decoding threads; None: ``min(4, CPU count)``.
    """

    input_size: int | None = None
    grayscale: bool | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_fraction: float = 0.875
    skip_bad: bool = False
    test_fraction: float = 0.1
    crop_scale: tuple[float, float] = CROP_SCALE
    crop_ratio: tuple[float, float] = CROP_RATIO
    workers: int | None = None


def image_options(source: Any) -> dict[str, Any]:
    """The image-folder options of a :class:`SearchConfig` (or a mapping with the same keys), for ``load_dataset``."""
    get = source.get if isinstance(source, Mapping) else (lambda k: getattr(source, k, None))
    out = {"input_size": get("input_size"), "grayscale": get("grayscale"), "skip_bad": bool(get("skip_bad_images")),
           "mean": get("mean"), "std": get("std"), "crop_scale": get("crop_scale"), "crop_ratio": get("crop_ratio"),
           "workers": get("workers")}  # fmt: skip
    return {k: v for k, v in out.items() if v is not None}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _has_class_images(folder: Path) -> bool:
    for d in _class_dirs(folder)[:64]:
        if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in d.iterdir() if p.is_file()):
            return True
    return False


def is_image_folder(path: str | Path) -> bool:
    """True when ``path`` holds class sub-folders of images (directly or under ``train/``)."""
    folder = Path(path)
    if not folder.is_dir():
        return False
    train = folder / "train"
    return (train.is_dir() and _has_class_images(train)) or _has_class_images(folder)


def _scan(folder: Path, classes: Sequence[str] | None) -> tuple[list[Path], list[int], list[str]]:
    dirs = _class_dirs(folder)
    names = [d.name for d in dirs]
    if classes is None:
        classes = names
        if not classes:
            raise DataError(f"{folder} has no class sub-folders (expected {folder}/<class>/<image>.png ...)")
    else:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(f"{folder} has class folders the training folder lacks: {', '.join(unknown[:5])}; "
                            "every evaluation class needs training images")  # fmt: skip
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for d in dirs:
        files = _images_in(d)
        if not files:
            log.warning("class folder %s holds no images (%s)", d, ", ".join(sorted(IMAGE_EXTENSIONS)))
        paths += files
        labels += [index[d.name]] * len(files)
    if not paths:
        raise DataError(f"{folder} holds no images with a known extension ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return paths, labels, list(classes)


def _open(path: Path) -> Any:
    """The decoded image (closed file; ``mode`` and ``size`` stay readable)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
    return img


def _decode(path: Path, size: int, gray: bool, crop_fraction: float) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        resized = max(size, int(round(size / crop_fraction)))
        if img.format == "JPEG":
            img.draft("L" if gray else "RGB", (resized, resized))  # decode at reduced scale: much faster
        img = img.convert("L" if gray else "RGB")
        w, h = img.size
        scale = resized / min(w, h)
        nw, nh = max(resized, int(round(w * scale))), max(resized, int(round(h * scale)))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
        arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _decode_all(paths: Sequence[Path], labels: Sequence[int], size: int, gray: bool, opts: ImageFolderOptions,
                bad: list[Path]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    def one(p: Path) -> np.ndarray | None:
        try:
            return _decode(p, size, gray, opts.crop_fraction)
        except Exception as e:  # PIL raises UnidentifiedImageError, OSError, ValueError, SyntaxError, ...
            if opts.skip_bad:
                return None
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"cannot decode image {p}: {first}; fix or remove it, or pass --skip-bad-images to "
                            "skip unreadable files") from None  # fmt: skip

    workers = opts.workers if opts.workers is not None else default_workers()
    with ThreadPoolExecutor(max(1, workers)) as pool:  # Pillow releases the GIL while decoding and resizing
        arrays = list(pool.map(one, paths))
    keep = [i for i, a in enumerate(arrays) if a is not None]
    bad += [paths[i] for i, a in enumerate(arrays) if a is None]
    c = 1 if gray else 3
    x = np.stack([arrays[i] for i in keep]) if keep else np.zeros((0, c, size, size), np.uint8)
    return x, np.asarray([labels[i] for i in keep], dtype=np.int64)


def default_workers() -> int:
    """Decoding threads when ``--workers`` is not given: ``min(4, CPU count)``."""
    return max(1, min(4, os.cpu_count() or 1))


def _check_range(name: str, v: Sequence[float], low: float, high: float | None) -> tuple[float, float]:
    flag = f"--{name.replace('_', '-')}"
    if len(v) != 2:
        raise DataError(f"{flag} takes two numbers (min,max), got {list(v)}")
    a, b = float(v[0]), float(v[1])
    if not (low < a <= b and (high is None or b <= high)) or not all(map(np.isfinite, (a, b))):
        upper = "" if high is None else f" <= {high}"
        raise DataError(f"{flag} must satisfy {low} < min <= max{upper}, got {a},{b}")
    return a, b


def _first_image(paths: Sequence[Path], skip_bad: bool) -> Any:
    for p in paths:
        try:
            return _open(p)
        except Exception as e:
            if not skip_bad:
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise DataError(f"cannot decode image {p}: {first}; fix or remove it, or pass --skip-bad-images "
                                "to skip unreadable files") from None  # fmt: skip
    raise DataError("no readable image found")


def load_image_folder(
    path: str | Path, opts: ImageFolderOptions | Mapping[str, Any] | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Decode an image folder into uint8 NCHW arrays.

    Returns:
        ``x_train, y_train, x_test, y_test, info``: ``info`` records the preprocessing (classes, size, color mode,
        crop fraction, given mean/std, skipped files) for the checkpoint.

    Raises:
        DataError: no class folders or images, an unreadable image (unless ``skip_bad``), unknown evaluation classes.
    """
    folder = Path(path).expanduser()
    tuples = ("mean", "std", "crop_scale", "crop_ratio")
    o = opts if isinstance(opts, ImageFolderOptions) else ImageFolderOptions(
        **{k: (tuple(v) if k in tuples and v is not None else v) for k, v in dict(opts or {}).items()})
    scale = _check_range("crop_scale", o.crop_scale, 0.0, 1.0)
    ratio = _check_range("crop_ratio", o.crop_ratio, 0.0, None)
    if o.workers is not None and o.workers < 1:
        raise DataError(f"--workers must be >= 1, got {o.workers}")
    train_dir = folder / "train" if (folder / "train").is_dir() else folder
    eval_dir = next((folder / n for n in EVAL_FOLDERS if train_dir != folder and (folder / n).is_dir()), None)
    paths, labels, classes = _scan(train_dir, None)
    first = _first_image(paths, o.skip_bad)
    gray = o.grayscale if o.grayscale is not None else first.mode in _GRAY_MODES
    size = int(o.input_size) if o.input_size is not None else min(224, min(first.size))
    if size < 1:
        raise DataError(f"--input-size must be >= 1, got {size}")
    bad: list[Path] = []
    if eval_dir is not None:
        e_paths, e_labels, _ = _scan(eval_dir, classes)
        split = f"test = {eval_dir.name}/"
    else:
        perm = np.random.default_rng(seed).permutation(len(paths))
        n_test = max(1, int(round(o.test_fraction * len(paths)))) if len(paths) > 1 else 0
        test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        e_paths, e_labels = [paths[i] for i in test_idx], [labels[i] for i in test_idx]
        paths, labels = [paths[i] for i in train_idx], [labels[i] for i in train_idx]
        split = f"test = {o.test_fraction:.0%} held out (seed {seed})"
    x_tr, y_tr = _decode_all(paths, labels, size, gray, o, bad)
    x_te, y_te = _decode_all(e_paths, e_labels, size, gray, o, bad)
    if bad:
        log.warning("skipped %d unreadable image(s) in %s (first: %s)", len(bad), folder, bad[0])
    if len(x_tr) == 0:
        raise DataError(f"{folder}: no readable training images")
    info = {
        "layout": "image-folder", "classes": classes, "input_size": size, "grayscale": gray,
        "crop_fraction": o.crop_fraction, "resize": "shorter side to input_size / crop_fraction, bilinear",
        "mean": list(o.mean) if o.mean is not None else None, "std": list(o.std) if o.std is not None else None,
        "split": split, "skipped": [str(p) for p in bad[:20]], "skipped_count": len(bad),
        "crop_scale": list(scale), "crop_ratio": list(ratio),
    }  # fmt: skip
    log.info("image folder %s: %d classes, %d train / %d test images at %s %dx%d (%s)", folder, len(classes),
             len(x_tr), len(x_te), "grayscale" if gray else "RGB", size, size, split)  # fmt: skip
    return x_tr, y_tr, x_te, y_te, info


def options_dict(opts: ImageFolderOptions) -> dict[str, Any]:
    """Plain values of ``opts`` (JSON-able)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()}


def _check_stats(mean: Sequence[float] | None, std: Sequence[float] | None, channels: int) -> None:
    for name, v in (("mean", mean), ("std", std)):
        if v is not None and len(v) not in (1, channels):
            raise DataError(f"--{name} has {len(v)} values for {channels}-channel images")


def normalization(x_train: torch.Tensor, info: Mapping[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The given mean/std (one value broadcast to every channel) or those of the training images."""
    c = x_train.shape[1]
    mean, std = info.get("mean"), info.get("std")
    _check_stats(mean, std, c)
    if mean is None:
        mean = [float(v) for v in x_train.mean(dim=(0, 2, 3))]
    if std is None:
        std = [max(float(v), 1e-6) for v in x_train.std(dim=(0, 2, 3))]
    mean = list(mean) * c if len(mean) == 1 else list(mean)
    std = list(std) * c if len(std) == 1 else list(std)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
