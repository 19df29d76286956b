"""Crowd images with head positions, as UCF-QNRF annotates them.

The "heads" are small bright disks on a darker textured background, at the
annotated positions; :func:`segnet_domains.synthetic.layouts.write_ucf_qnrf`
writes them as the data set ships (JPEG + MATLAB ``_ann.mat``).
"""

from __future__ import annotations

import numpy as np
from skimage.draw import disk


def crowd_image(
    rng: np.random.Generator, size: tuple[int, int], heads: int, grey: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """An ``H×W×3`` uint8 image (``H×W`` if ``grey``) and its ``heads×2`` 1-based ``(x, y)`` points."""
    h, w = size
    img = rng.normal(70, 12, (h, w, 3)).clip(0, 255)
    x = rng.uniform(2, w - 3, heads)
    y = rng.uniform(2, h - 3, heads)
    for cx, cy in zip(x, y):
        rr, cc = disk((cy, cx), 2.5, shape=(h, w))
        img[rr, cc] = (220, 190, 160)
    img = img.astype(np.uint8)
    if grey:
        img = img.mean(axis=-1).astype(np.uint8)
    return img, np.stack([x + 1, y + 1], axis=1)  # MATLAB's 1-based pixel coordinates
