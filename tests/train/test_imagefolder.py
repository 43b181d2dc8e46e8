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


# ------------------------------------------------------------------------------------- training augmentation


def test_random_resized_crop_whole_image_is_identity_flip_mirrors_and_generator_reproduces():
    import torch

    from slimrt.train.data import random_resized_crop

    x = torch.randn(32, 3, 9, 7)
    same = random_resized_crop(x, torch.Generator().manual_seed(0), scale=(1, 1), ratio=(7 / 9, 7 / 9), flip=False)
    assert torch.allclose(same, x, atol=1e-5)  # whole-image crop, half-pixel grid: exact resampling
    flipped = random_resized_crop(x, torch.Generator().manual_seed(1), scale=(1, 1), ratio=(7 / 9, 7 / 9))
    mirrored = [bool(torch.allclose(f, i.flip(-1), atol=1e-5)) for f, i in zip(flipped, x, strict=True)]
    kept = [bool(torch.allclose(f, i, atol=1e-5)) for f, i in zip(flipped, x, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True)) and any(mirrored) and any(kept)
    a = random_resized_crop(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and not torch.allclose(a, x, atol=1e-3)
    assert torch.equal(a, random_resized_crop(x, torch.Generator().manual_seed(2)))
    # a crop only magnifies part of the image: every output value lies within the image's own range
    assert float(a.amin()) >= float(x.amin()) - 1e-5 and float(a.amax()) <= float(x.amax()) + 1e-5


def test_png_folder_training_batches_are_cropped_and_flipped_evaluation_is_deterministic(tmp_path):
    import torch

    _write(tmp_path / "p", {"a": 10, "b": 10}, size=(24, 20))
    ds = load_dataset(str(tmp_path / "p"), val_size=4, image_options={"input_size": 12})
    assert ds.resized_crop == ((0.08, 1.0), (3 / 4, 4 / 3)) and ds.preprocess["crop_scale"] == [0.08, 1.0]
    plain = list(ds.batches("train", 8))
    aug = list(ds.batches("train", 8, augment=True, generator=torch.Generator().manual_seed(0)))
    assert [xb.shape for xb, _ in aug] == [xb.shape for xb, _ in plain]
    assert all(torch.equal(ya, yp) for (_, ya), (_, yp) in zip(aug, plain, strict=True))  # labels travel along
    assert all(not torch.allclose(xa, xp, atol=1e-3) for (xa, _), (xp, _) in zip(aug, plain, strict=True))
    for split in ("val", "test"):  # evaluation: resize + center-crop only, the same every pass
        assert all(torch.equal(a, b) for (a, _), (b, _) in zip(ds.batches(split, 3), ds.batches(split, 3), strict=True))
    assert ds.augmentation(True, flip=False) == {"kind": "random-resized-crop", "scale": [0.08, 1.0],
                                                 "ratio": [0.75, 4 / 3], "flip": False}  # fmt: skip
    assert ds.augmentation(False) == {"kind": "none"}

    whole = load_dataset(str(tmp_path / "p"), val_size=4, image_options={"input_size": 12, "crop_scale": [1, 1],
                                                                           "crop_ratio": [1, 1]})  # fmt: skip
    g = torch.Generator().manual_seed(0)
    unflipped = next(whole.batches("train", 16, augment=True, flip=False, generator=g))[0]
    assert torch.allclose(unflipped, whole.x_train[:16], atol=1e-5)  # --no-flip and whole-image crops: unchanged
    with pytest.raises(DataError, match="--crop-scale must satisfy"):
        load_dataset(str(tmp_path / "p"), val_size=4, image_options={"input_size": 12, "crop_scale": [0.5, 1.5]})
    with pytest.raises(DataError, match="--crop-ratio takes two numbers"):
        load_dataset(str(tmp_path / "p"), val_size=4, image_options={"input_size": 12, "crop_ratio": [1.0]})


def test_decoding_threads_give_the_same_arrays_and_name_a_bad_file(tmp_path):
    _write(tmp_path / "p", {"a": 9, "b": 9})
    one = load_image_folder(tmp_path / "p", {"input_size": 8, "workers": 1})
    three = load_image_folder(tmp_path / "p", {"input_size": 8, "workers": 3})
    assert all(np.array_equal(u, v) for u, v in zip(one[:4], three[:4], strict=True))
    bad = tmp_path / "p" / "a" / "zz.jpg"
    bad.write_bytes(b"\xff\xd8\xff truncated")
    with pytest.raises(DataError, match=f"cannot decode image {bad}"):
        load_image_folder(tmp_path / "p", {"input_size": 8, "workers": 3})
    with pytest.raises(DataError, match="--workers must be >= 1"):
        load_image_folder(tmp_path / "p", {"input_size": 8, "workers": 0})
