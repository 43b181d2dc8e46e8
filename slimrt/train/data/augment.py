"""Batch iteration over in-memory tensors with vectorised augmentation (random pad-and-crop, horizontal flip)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

__all__ = ["augment_batch", "batches"]


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
