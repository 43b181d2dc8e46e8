"""Datasets: real Fashion-MNIST, discovery and its errors, IDX parsing, .npz, synthetic, batching, augmentation."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from slimrt.errors import DataError
from slimrt.train.data import (
    DATA_ENV,
    FASHION_MNIST_FILES,
    augment_batch,
    batches,
    find_fashion_mnist,
    load_dataset,
    make_synthetic,
    read_idx,
)


def _real_files() -> dict[str, Path] | None:
    try:
        return find_fashion_mnist()
    except DataError:
        return None


REAL = _real_files()
needs_real = pytest.mark.skipif(REAL is None, reason="Fashion-MNIST not installed (make setup installs it)")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)


@pytest.fixture(scope="module")
def fmnist():
    if REAL is None:
        pytest.skip("Fashion-MNIST not installed")
    return load_dataset("fashion-mnist")


def _write_idx(path: Path, arr: np.ndarray, truncate: int = 0) -> Path:
    data = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    with gzip.open(path, "wb") as f:
        f.write(data[: len(data) - truncate])
    return path


def _link_real(dst: Path, skip: str | None = None) -> None:
    assert REAL is not None
    dst.mkdir(parents=True, exist_ok=True)
    for key, p in REAL.items():
        if key != skip:
            (dst / p.name).symlink_to(p)


# ------------------------------------------------------------------------------------------------ Fashion-MNIST


@needs_real
def test_fashion_mnist_loads_with_split_and_normalization(fmnist):
    ds = fmnist
    assert ds.name == "fashion-mnist" and ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.x_train.shape == (55000, 1, 28, 28) and ds.x_val.shape == (5000, 1, 28, 28)
    assert ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert set(y.unique().tolist()) == set(range(10))
    assert abs(ds.x_train.mean().item()) < 0.02 and abs(ds.x_train.std().item() - 1) < 0.02
    assert ds.mean == (0.2860,) and ds.std == (0.3530,)
    # A black pixel maps to fill; the minimum of normalized data is exactly that.
    assert ds.x_train.min().item() == pytest.approx(ds.fill[0], abs=1e-6)
    # Test set in file order: compare against the raw IDX bytes.
    raw = read_idx(REAL["test_images"])
    assert torch.allclose(ds.x_test[:5, 0], (torch.from_numpy(raw[:5]).float() / 255 - 0.2860) / 0.3530, atol=1e-6)
    assert torch.equal(ds.y_test, torch.from_numpy(read_idx(REAL["test_labels"]).astype(np.int64)))


@needs_real
def test_fashion_mnist_limit_train_keeps_first_images_and_val(fmnist):
    small = load_dataset("fashion-mnist", limit_train=300)
    assert small.x_train.shape[0] == 300
    assert torch.equal(small.x_train, fmnist.x_train[:300]) and torch.equal(small.x_val, fmnist.x_val)
    other = load_dataset("fashion-mnist", limit_train=300, seed=1)
    assert not torch.equal(other.y_val, fmnist.y_val)


@needs_real
def test_discovery_order_root_env_then_debian(tmp_path, monkeypatch):
    debian = find_fashion_mnist()  # env unset, no root: the package's folder
    assert debian["train_images"].parent == REAL["train_images"].parent
    env_dir = tmp_path / "env"
    _link_real(env_dir)
    monkeypatch.setenv(DATA_ENV, str(env_dir))
    assert find_fashion_mnist()["train_labels"].parent == env_dir
    root_dir = tmp_path / "root" / "FashionMNIST" / "raw"  # torchvision's layout under --data
    _link_real(root_dir)
    assert find_fashion_mnist(tmp_path / "root")["test_images"].parent == root_dir


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(DataError) as e:
        find_fashion_mnist(tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "--data" in msg and "train-images-idx3-ubyte.gz" in msg
    assert "apt-get install -y dataset-fashion-mnist" in msg
    assert "github.com/zalandoresearch/fashion-mnist" in msg and DATA_ENV in msg
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("fashion-mnist", root=tmp_path / "nope")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(DataError, match=r"\$SLIMRT_DATA.*apt-get install"):
        find_fashion_mnist()


@needs_real
def test_truncated_gz_names_the_file(tmp_path):
    d = tmp_path / "fm"
    _link_real(d, skip="train_labels")
    src = REAL["train_labels"].read_bytes()
    bad = d / REAL["train_labels"].name
    bad.write_bytes(src[: len(src) // 2])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz is truncated or corrupt"):
        load_dataset("fashion-mnist", root=d)


def test_idx_parser_validates_magic_and_sizes(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(_write_idx(tmp_path / "ok.gz", arr)), arr)
    with pytest.raises(DataError, match=r"short\.gz is truncated: header \[2, 3, 4\] needs 40 bytes, found 35"):
        read_idx(_write_idx(tmp_path / "short.gz", arr, truncate=5))
    with pytest.raises(DataError, match="3-d array, expected 1-d"):
        read_idx(tmp_path / "ok.gz", expect_ndim=1)
    (tmp_path / "magic").write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 20)
    with pytest.raises(DataError, match="not a uint8 IDX file"):
        read_idx(tmp_path / "magic")
    (tmp_path / "notgz.gz").write_bytes(b"plain bytes, not gzip")
    with pytest.raises(DataError, match=r"notgz\.gz is truncated or corrupt"):
        read_idx(tmp_path / "notgz.gz")


def test_mismatched_image_and_label_counts(tmp_path):
    d = tmp_path / "fm"
    d.mkdir()
    imgs = np.zeros((4, 28, 28), np.uint8)
    for key, base in FASHION_MNIST_FILES.items():
        n = 3 if key == "test_labels" else 4
        _write_idx(d / f"{base}.gz", imgs if "images" in key else np.arange(n, dtype=np.uint8))
    with pytest.raises(DataError, match="4 images but its labels file holds 3"):
        load_dataset("fashion-mnist", root=d, val_size=1)


# --------------------------------------------------------------------------------------------------- npz, synthetic


def _indexed_images(n: int, layout: str = "nhwc") -> np.ndarray:
    x = np.zeros((n, 6, 6, 3), np.uint8)
    x[:, 0, 0, 0] = np.arange(n) // 256
    x[:, 0, 1, 0] = np.arange(n) % 256
    x[:, 1:, :, :] = 128
    return x if layout == "nhwc" else x.transpose(0, 3, 1, 2)


def _ids(ds, x: torch.Tensor) -> list[int]:
    raw = x * torch.tensor(ds.std).view(1, -1, 1, 1) + torch.tensor(ds.mean).view(1, -1, 1, 1)
    px = (raw[:, 0, 0, :2] * 255).round().long()
    return (px[:, 0] * 256 + px[:, 1]).tolist()


def test_npz_nhwc_uint8_split_is_disjoint_and_deterministic(tmp_path):
    n = 300
    path = tmp_path / "d.npz"
    np.savez(path, x_train=_indexed_images(n), y_train=np.arange(n) % 4, x_test=_indexed_images(20),
             y_test=np.arange(20) % 4)  # fmt: skip
    ds = load_dataset(str(path), val_size=50, seed=3)
    assert ds.input_shape == (3, 6, 6) and ds.num_classes == 4 and ds.name == "d.npz"
    train, val = _ids(ds, ds.x_train), _ids(ds, ds.x_val)
    assert len(val) == 50 and sorted(train + val) == list(range(n)) and not set(train) & set(val)
    assert ds.y_train.tolist() == [i % 4 for i in train]
    assert _ids(load_dataset(str(path), val_size=50, seed=3), ds.x_val) == val
    assert _ids(ds, load_dataset(str(path), val_size=50, seed=4).x_val) != val
    for c in range(3):  # normalized per channel with the training set's statistics
        assert abs(ds.x_train[:, c].mean().item()) < 0.1
    default = load_dataset(str(path))
    assert len(default.y_val) == 30  # 10% when no val_size is given


def test_npz_layouts_and_errors(tmp_path):
    x = np.random.default_rng(0).random((20, 1, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "nchw.npz", x_train=x, y_train=np.arange(20) % 2, x_test=x[:4], y_test=np.zeros(4, int))
    assert load_dataset(str(tmp_path / "nchw.npz"), val_size=2).input_shape == (1, 5, 5)
    np.savez(tmp_path / "nhw.npz", x_train=x[:, 0], y_train=np.arange(20) % 2, x_test=x[:4, 0], y_test=np.zeros(4, int))
    assert load_dataset(str(tmp_path / "nhw.npz"), val_size=2).input_shape == (1, 5, 5)
    np.savez(tmp_path / "missing.npz", x_train=x, y_train=np.zeros(20, int))
    with pytest.raises(DataError, match="lacks x_test, y_test"):
        load_dataset(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "badlabels.npz", x_train=x, y_train=np.zeros(19, int), x_test=x, y_test=np.zeros(20, int))
    with pytest.raises(DataError, match="19 labels for 20 images"):
        load_dataset(str(tmp_path / "badlabels.npz"))
    obj = np.empty(20, dtype=object)
    np.savez(tmp_path / "pickled.npz", x_train=x, y_train=obj, x_test=x, y_test=np.zeros(20, int))
    with pytest.raises(DataError, match="pickled objects"):
        load_dataset(str(tmp_path / "pickled.npz"))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "absent.npz"))
    with pytest.raises(DataError, match="unknown dataset 'cifar-100'"):
        load_dataset("cifar-100")
    with pytest.raises(DataError, match="val_size must be in"):
        load_dataset(str(tmp_path / "nchw.npz"), val_size=20)


def test_synthetic_is_deterministic_and_separable():
    a, b, c = load_dataset("synthetic"), load_dataset("synthetic"), load_dataset("synthetic", seed=1)
    assert a.input_shape == (1, 16, 16) and a.num_classes == 10
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_train, c.x_train)
    rgb = load_dataset("synthetic-3x32x32", val_size=100)
    assert rgb.x_train.shape[1:] == (3, 32, 32) and len(rgb.y_val) == 100
    # Nearest class mean (fit on train) classifies the test set: the classes are separable.
    flat = a.x_train.flatten(1)
    means = torch.stack([flat[a.y_train == k].mean(0) for k in range(10)])
    pred = torch.cdist(a.x_test.flatten(1), means).argmin(1)
    assert (pred == a.y_test).float().mean().item() > 0.9
    xtr, _, _, _ = make_synthetic(n_train=7, n_test=1, shape=(2, 5, 9))
    assert xtr.shape == (7, 2, 5, 9) and xtr.dtype == np.uint8


# --------------------------------------------------------------------------------------------- batches, augmentation


def test_batches_cover_everything_once_and_are_reproducible():
    x = torch.arange(10.0).view(10, 1, 1, 1).expand(10, 1, 4, 4).contiguous()
    y = torch.arange(10)
    plain = list(batches(x, y, 4))
    assert [len(b[1]) for b in plain] == [4, 4, 2] and torch.equal(torch.cat([b[1] for b in plain]), y)
    assert [len(b[1]) for b in batches(x, y, 4, drop_last=True)] == [4, 4]
    order1 = torch.cat([b[1] for b in batches(x, y, 3, shuffle=True, generator=torch.Generator().manual_seed(5))])
    order2 = torch.cat([b[1] for b in batches(x, y, 3, shuffle=True, generator=torch.Generator().manual_seed(5))])
    assert torch.equal(order1, order2) and not torch.equal(order1, y)
    assert sorted(order1.tolist()) == list(range(10))
    for xb, yb in batches(x, y, 3, shuffle=True, generator=torch.Generator().manual_seed(1)):
        assert torch.equal(xb[:, 0, 0, 0], yb.float())  # images stay paired with their labels
    with pytest.raises(ValueError):
        next(batches(x, y, 0))


def _windows(img: torch.Tensor, pad: int, fill: float) -> list[torch.Tensor]:
    c, h, w = img.shape
    p = torch.full((c, h + 2 * pad, w + 2 * pad), fill)
    p[:, pad : pad + h, pad : pad + w] = img
    return [p[:, dy : dy + h, dx : dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]


def test_augmentation_is_a_random_crop_or_flip_of_each_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, 28, 28)
    out = augment_batch(x, torch.Generator().manual_seed(0), fill=-3.0)
    assert out.shape == x.shape
    assert not torch.equal(out, x)
    assert torch.equal(out, augment_batch(x, torch.Generator().manual_seed(0), fill=-3.0))
    flipped = 0
    for img, aug in zip(x, out, strict=True):
        straight = any(torch.equal(aug, w) for w in _windows(img, 2, -3.0))  # pad 2 for 28 px
        mirrored = any(torch.equal(aug, w) for w in _windows(img.flip(2), 2, -3.0))
        assert straight or mirrored
        flipped += mirrored and not straight
    assert 0 < flipped < 16
    only_flip = augment_batch(x, g, pad=0)
    assert all(torch.equal(a, i) or torch.equal(a, i.flip(2)) for a, i in zip(only_flip, x, strict=True))
    only_crop = augment_batch(torch.randn(8, 3, 32, 32), g, flip=False, fill=(0.0, 1.0, 2.0))
    border = torch.cat([only_crop[:, :, :4].flatten(2), only_crop[:, :, -4:].flatten(2)], 2)
    assert ((border == torch.tensor([0.0, 1.0, 2.0]).view(1, 3, 1)).any(2)).any()  # per-channel fill with pad 4


def test_dataset_batches_augment_with_black_padding():
    ds = load_dataset("synthetic", val_size=200)
    xb, yb = next(ds.batches("train", 64, shuffle=True, augment=True, generator=torch.Generator().manual_seed(0)))
    assert xb.shape == (64, 1, 16, 16) and yb.shape == (64,)
    assert (xb == ds.fill[0]).sum() > (ds.x_train[:64] == ds.fill[0]).sum()
    assert sum(len(b[1]) for b in ds.batches("test", 128)) == len(ds.y_test)
    with pytest.raises(ValueError, match="split must be"):
        ds.split("dev")


def _fake_fashion_folder(d: Path, n_train: int = 40, n_test: int = 20) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for key, base in FASHION_MNIST_FILES.items():
        n = n_train if key.startswith("train") else n_test
        labels = np.arange(n, dtype=np.uint8) % 10
        arr = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8) if "images" in key else labels
        _write_idx(d / f"{base}.gz", arr)
    return d


def test_data_option_accepts_a_folder_of_idx_files(tmp_path: Path) -> None:
    """`--data DIR` (the spelling README and the missing-data hint use) loads Fashion-MNIST from that folder."""
    folder = _fake_fashion_folder(tmp_path / "fm")
    ds = load_dataset(str(folder), val_size=10)
    assert ds.name == "fashion-mnist" and ds.input_shape == (1, 28, 28)
    assert len(ds.y_train) == 30 and len(ds.y_val) == 10 and len(ds.y_test) == 20
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "nowhere" / "fm"))


def test_one_spelling_for_the_data_folder() -> None:
    from slimrt.train.data import HOW_TO_GET

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "--data /that/folder" in HOW_TO_GET
    assert "--data-dir" not in readme and "--data-dir" not in HOW_TO_GET
