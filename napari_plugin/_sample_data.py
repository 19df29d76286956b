"""Sample data (File ▸ Open Sample ▸ SegNet segmentation): synthetic, made on the spot, nothing downloaded.

* an MRI-like FLAIR volume: a head with skull, grey and white matter,
  ventricles, a smooth bias field, noise and a few bright white-matter lesions;
* an aerial-like RGB scene: fields, roads, buildings, trees and a pond.

:func:`make_mri_volume` and :func:`make_aerial_scene` also return the ground
truth, which the tests use to train a tiny model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

LayerData = tuple[Any, dict[str, Any], str]

#: Classes of :func:`make_aerial_scene`'s truth.
AERIAL_CLASSES = ["background", "building", "road", "tree", "water"]


def make_mri_volume(
    shape: tuple[int, int, int] = (72, 88, 72), lesions: int = 6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic FLAIR-like head volume and its lesion mask.

    Args:
        shape: voxels along (R, A, S).
        lesions: number of ellipsoidal lesions in the white matter.
        seed: random seed (same seed, same volume).

    Returns:
        ``(volume float32, mask uint8)`` with 1 on lesion voxels.
    """
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    r = np.sqrt(sum(g**2 for g in grids))
    r_head = np.sqrt((grids[0] / 0.85) ** 2 + (grids[1] / 0.92) ** 2 + (grids[2] / 0.85) ** 2)
    vol = np.zeros(shape, np.float32)
    vol[(r_head < 1.0) & (r_head >= 0.9)] = 0.35  # skull/scalp
    brain = r_head < 0.88
    vol[brain] = 0.55  # grey matter
    wm = r_head < 0.7
    vol[wm] = 0.42  # white matter (FLAIR: darker than grey)
    vent = (np.abs(grids[0]) < 0.12) & (np.sqrt((grids[1] / 0.35) ** 2 + (grids[2] / 0.2) ** 2) < 1)
    vol[vent] = 0.08  # ventricles: dark CSF
    mask = np.zeros(shape, np.uint8)
    placed = 0
    while placed < lesions:
        c = rng.uniform(-0.55, 0.55, 3)
        if np.sqrt((c**2).sum()) > 0.6 or (abs(c[0]) < 0.2 and abs(c[2]) < 0.25):
            continue
        radii = rng.uniform(0.09, 0.18, 3)
        blob = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, radii)) < 1.0
        mask[blob & wm & ~vent] = 1
        placed += 1
    vol[mask == 1] = 0.95
    bias = 1.0 + 0.15 * grids[0] - 0.1 * grids[2] + 0.05 * r
    noise = ndi.gaussian_filter(rng.normal(0, 0.04, shape).astype(np.float32), 0.7)
    vol = ndi.gaussian_filter(vol, 0.8) * bias + noise
    return (np.clip(vol, 0, None) * 1000).astype(np.float32), mask


def make_aerial_scene(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic aerial RGB scene and its class map (:data:`AERIAL_CLASSES`).

    Returns:
        ``(rgb uint8 H×W×3, classes uint8 H×W)``.
    """
    rng = np.random.default_rng(seed)
    cls = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    pond = ((yy - size * 0.75) / (size * 0.12)) ** 2 + ((xx - size * 0.2) / (size * 0.16)) ** 2 < 1
    cls[pond] = 4
    for _ in range(max(2, size // 40)):
        cy, cx = rng.integers(0, size, 2)
        rad = rng.integers(size // 40 + 2, size // 18 + 4)
        cls[((yy - cy) ** 2 + (xx - cx) ** 2 < rad**2) & (cls == 0)] = 3
    road_w = max(3, size // 40)
    for pos in rng.choice(np.arange(size // 8, size - size // 8), 2, replace=False):
        cls[pos : pos + road_w, :] = 2
        cls[:, pos : pos + road_w] = 2
    for _ in range(max(4, size // 16)):
        h, w = rng.integers(size // 24 + 3, size // 10 + 5, 2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        if (cls[y : y + h, x : x + w] == 0).all():
            cls[y : y + h, x : x + w] = 1
    palette = np.array(
        [[118, 140, 72], [176, 96, 80], [128, 128, 124], [40, 82, 38], [46, 86, 130]], np.float32
    )
    rgb = palette[cls]
    texture = ndi.gaussian_filter(rng.normal(0, 18, (size, size, 3)).astype(np.float32), (1.5, 1.5, 0))
    rgb = rgb + texture + rng.normal(0, 4, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8), cls


def mri_sample() -> list[LayerData]:
    """napari sample: an MRI-like FLAIR volume (1 × 1 × 1.2 mm voxels) with bright lesions."""
    vol, _ = make_mri_volume()
    return [(vol, {"name": "mri sample", "scale": (1.0, 1.0, 1.2), "colormap": "gray"}, "image")]


def aerial_sample() -> list[LayerData]:
    """napari sample: an aerial-like RGB scene (0.5 m pixels)."""
    rgb, _ = make_aerial_scene(512)
    return [(rgb, {"name": "aerial sample", "rgb": True, "scale": (0.5, 0.5)}, "image")]
