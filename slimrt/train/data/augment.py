"""Batch iteration over in-memory tensors with vectorised augmentation: random pad-and-crop (small images) or
random-resized-crop (image folders), each with an optional horizontal flip."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

__all__ = ["augment_batch", "random_resized_crop", "batches", "CROP_SCALE", "CROP_RATIO"]

CROP_SCALE = (0.08, 1.0)
"""Default area range of :func:`random_resized_crop`, as a fraction of the image (ImageNet / torchvision)."""
CROP_RATIO = (3 / 4, 4 / 3)
"""Default aspect-ratio (width / height) range of :func:`random_resized_crop`."""


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


def random_resized_crop(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    scale: Sequence[float] = CROP_SCALE,
    ratio: Sequence[float] = CROP_RATIO,
    flip: bool = True,
    tries: int = 10,
) -> torch.Tensor:
    """Random-resized-crop (and optional horizontal flip) of a whole NCHW batch, resampled back to H x W.

    Each image gets a crop of a random area fraction in ``scale`` and a random aspect ratio (log-uniform) in
    ``ratio``, placed uniformly inside the image, as torchvision's ``RandomResizedCrop``: up to ``tries`` draws per
    image, the whole image when none fits. The crop is resampled bilinearly (half-pixel centres, edge pixels
    repeated) with one ``grid_sample`` for the batch; a crop of the whole image without flip is the identity.

    Args:
        x: images, N x C x H x W (float).
        generator: CPU random generator (None: torch's global one).
        scale: (min, max) crop area as a fraction of the image area.
        ratio: (min, max) crop width / height.
        flip: flip each image left-right with probability 1/2.
        tries: draws per image before falling back to the whole image.
    """
    b, _, h, w = x.shape
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    area = torch.empty(b, tries).uniform_(float(scale[0]), float(scale[1]), generator=generator)
    aspect = torch.exp(torch.empty(b, tries).uniform_(lo, hi, generator=generator))
    cw = torch.sqrt(area * aspect * (h * w))  # crop width and height in pixels (continuous)
    ch = torch.sqrt(area / aspect * (h * w))
    ok = (cw <= w) & (ch <= h)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.zeros(b, dtype=torch.long))
    pick = torch.arange(b)
    cw = torch.where(ok.any(1), cw[pick, first], torch.full((b,), float(w)))
    ch = torch.where(ok.any(1), ch[pick, first], torch.full((b,), float(h)))
    x0 = torch.rand(b, generator=generator) * (w - cw)
    y0 = torch.rand(b, generator=generator) * (h - ch)
    sx, sy = cw / w, ch / h  # affine_grid maps output [-1, 1] to input [cx - sx, cx + sx] (normalized)
    cx, cy = (2 * x0 + cw) / w - 1, (2 * y0 + ch) / h - 1
    if flip:
        sx = torch.where(torch.rand(b, generator=generator) < 0.5, -sx, sx)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, sy, cy
    theta = theta.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


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
    resized_crop: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Iterate over ``(x, y)`` in mini-batches, optionally shuffled and augmented.

    Augmentation is :func:`augment_batch` (pad-and-crop), or :func:`random_resized_crop` when ``resized_crop`` gives
    its ``(scale, ratio)``. Each call is a fresh pass; pass a seeded ``generator`` for a reproducible order and
    augmentation.
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
        if augment and resized_crop is not None:
            xb = random_resized_crop(xb, generator, scale=resized_crop[0], ratio=resized_crop[1], flip=flip)
        elif augment:
            xb = augment_batch(xb, generator, pad=pad, flip=flip, fill=fill)
        yield xb, yb
