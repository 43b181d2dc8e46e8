"""Image folders: layouts, color modes, preprocessing, normalization, unreadable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimrt.errors import DataError
from slimrt.train.data import load_dataset
from slimrt.train.imagefolder import is_image_folder, load_image_folder


def _write(folder: Path, classes: dict[str, int], size: tuple[int, int] = (20, 12), mode: str = "RGB",
           seed: int = 0) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    for ci, (name, n) in enumerate(classes.items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            arr = np.clip(rng.normal(40 + 60 * ci, 10, size=shape), 0, 255).astype(np.uint8)
            Image.fromarray(arr, mode).save(folder / name / f"{i:03d}.{'png' if i % 2 else 'jpg'}")


def test_flat_layout_rgb_resized_center_cropped_with_computed_stats(tmp_path):
    _write(tmp_path / "pics", {"cat": 12, "dog": 12, "emu": 6})
    (tmp_path / "pics" / "dog" / "notes.txt").write_text("not an image")
    assert is_image_folder(tmp_path / "pics") and not is_image_folder(tmp_path / "pics" / "cat")
    ds = load_dataset(str(tmp_path / "pics"), val_size=3, image_options={"input_size": 8})
    assert ds.input_shape == (3, 8, 8) and ds.num_classes == 3
    assert len(ds.y_test) == 3 and len(ds.y_val) == 3 and len(ds.y_train) == 24  # 10% test, then val carved
    assert ds.preprocess["classes"] == ["cat", "dog", "emu"] and ds.preprocess["grayscale"] is False
    assert len(ds.mean) == 3 and all(0 < s for s in ds.std)
    assert abs(float(ds.x_train.mean())) < 0.2  # normalized with the training images' own statistics
    assert ds.name == str((tmp_path / "pics").resolve())


def test_train_val_layout_grayscale_given_stats_and_labels_by_folder_name(tmp_path):
    _write(tmp_path / "d" / "train", {"a": 6, "b": 6}, mode="L")
    _write(tmp_path / "d" / "val", {"b": 3}, mode="L", seed=1)
    x_tr, y_tr, x_te, y_te, info = load_image_folder(tmp_path / "d", {"input_size": 10})
    assert x_tr.shape == (12, 1, 10, 10) and x_te.shape == (3, 1, 10, 10) and info["grayscale"] is True
    assert sorted(set(y_tr.tolist())) == [0, 1] and y_te.tolist() == [1, 1, 1]  # val/b is class 1 of train/
    assert info["split"] == "test = val/"
    ds = load_dataset(str(tmp_path / "d"), val_size=2,
                      image_options={"input_size": 10, "grayscale": False, "mean": [0.5], "std": [0.25]})
    assert ds.input_shape == (3, 10, 10) and ds.mean == (0.5, 0.5, 0.5) and ds.std == (0.25, 0.25, 0.25)
    _write(tmp_path / "d" / "val", {"zebra": 1}, mode="L")
    with pytest.raises(DataError, match="class folders the training folder lacks: zebra"):
        load_image_folder(tmp_path / "d", {"input_size": 10})


def test_unreadable_image_is_named_in_one_line_or_skipped_and_counted(tmp_path):
    _write(tmp_path / "p", {"a": 5, "b": 5})
    bad = tmp_path / "p" / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError) as info:
        load_dataset(str(tmp_path / "p"), val_size=1, image_options={"input_size": 8})
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and str(bad) in msg and "--skip-bad-images" in msg
    ds = load_dataset(str(tmp_path / "p"), val_size=1, image_options={"input_size": 8, "skip_bad": True})
    assert ds.preprocess["skipped_count"] == 1 and ds.preprocess["skipped"] == [str(bad)]
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 10


def test_idx_folder_still_means_fashion_mnist(tmp_path):
    from slimrt.train.data import FASHION_MNIST_FILES

    for base in FASHION_MNIST_FILES.values():
        (tmp_path / f"{base}.gz").write_bytes(b"")
    (tmp_path / "extra").mkdir()  # a stray sub-folder does not turn it into an image folder
    with pytest.raises(DataError, match="truncated"):
        load_dataset(str(tmp_path))
