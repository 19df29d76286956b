"""Generator of a miniature UCF-QNRF layout: ``Train/`` and ``Test/`` with JPEGs and MATLAB v5 ``_ann.mat``.

As distributed (``UCF-QNRF_ECCV18``): ``img_NNNN.jpg`` (RGB JPEG, a few grey)
with ``img_NNNN_ann.mat`` beside it, written by MATLAB as a v5 MAT-file whose
``annPoints`` is an ``N×2`` double array of ``(x, y)`` head positions,
1-based. Here the "heads" are small bright disks on a darker textured
background, at the annotated positions.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
from scipy.io import savemat
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


def write_annotation(path: Path, points: np.ndarray) -> Path:
    """``img_NNNN_ann.mat``: MATLAB v5, ``annPoints`` double ``N×2``."""
    savemat(path, {"annPoints": np.asarray(points, np.float64).reshape(-1, 2)}, format="5")
    return path


def make_ucf_qnrf(
    root: str | Path,
    train: int = 3,
    test: int = 2,
    size: tuple[int, int] = (72, 96),
    seed: int = 0,
) -> Path:
    """Write ``ROOT/Train`` and ``ROOT/Test``; image ``i`` has ``5 + 4·i`` heads; the last test image is grey.

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("Train", train), ("Test", test)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            grey = split == "Test" and i == n
            img, points = crowd_image(rng, size, 5 + 4 * i, grey=grey)
            iio.imwrite(folder / f"img_{i:04d}.jpg", img, quality=92)
            write_annotation(folder / f"img_{i:04d}_ann.mat", points)
    return root
