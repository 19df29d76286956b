"""2D scenes with known masks: bright disks and blocks on a noisy background.

The trained-model test fixtures learn on them (``tests/data/synthetic.py``)
and the tests feed them to models whose answer they check; the examples in the
web page's browser test use them too. Images are ``C×H×W`` float32 (about
100 ± 10, +60 inside the mask), masks ``H×W`` uint8 0/1.
"""

from __future__ import annotations

import numpy as np


def blob_scene(
    rng: np.random.Generator, h: int = 64, w: int = 64, channels: int = 1, n_blobs: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy ``C×H×W`` float image with bright disks, and the disks' ``H×W`` mask (0/1)."""
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), np.uint8)
    for _ in range(n_blobs):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(4, max(5.0, min(h, w) / 5))
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 1
    return render(rng, mask, channels), mask


def slab_scene(rng: np.random.Generator, h: int, w: int, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`blob_scene` with one bright axis-aligned block, which may touch the borders."""
    mask = np.zeros((h, w), np.uint8)
    y0, x0 = rng.integers(-h // 4, h - 3), rng.integers(-w // 4, w - 3)
    y1, x1 = y0 + rng.integers(4, max(5, h // 2 + 2)), x0 + rng.integers(4, max(5, w // 2 + 2))
    mask[max(y0, 0) : y1, max(x0, 0) : x1] = 1
    return render(rng, mask, channels), mask


def render(rng: np.random.Generator, mask: np.ndarray, channels: int) -> np.ndarray:
    """``C×H×W`` float32: background 100 ± 10 (Gaussian), 60 brighter where ``mask`` is 1."""
    img = rng.normal(100, 10, (channels, *mask.shape)) + 60.0 * mask[None]
    return img.astype(np.float32)
