"""A RITE-style set: synthetic 565×584 RGB fundus photographs with artery/vein labels, in the real layout.

Each image has a circular field of view, an orange-red background with
vignetting, a bright optic disc, and artery and vein trees growing from the
disc with tapering widths. Files follow RITE (built on DRIVE)::

    ROOT/training/images/21_training.tif     RGB, 584 rows × 565 columns
    ROOT/training/av/21_training.png         red artery, blue vein, green crossing, black background
    ROOT/training/mask/21_training_mask.gif  field of view (255 inside)
    ROOT/test/images/01_test.tif …           the same with ``_test``
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from scipy import ndimage
from skimage.draw import line

HEIGHT, WIDTH = 584, 565


def _grow_tree(
    rng: np.random.Generator, start: np.ndarray, angle: float, width: float, shape: tuple[int, int]
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Segments ``(p0, p1, width)`` of a branching vessel tree (a wandering walk that forks)."""
    segs: list[tuple[np.ndarray, np.ndarray, float]] = []
    stack = [(start.astype(float), angle, width, 0)]
    while stack and len(segs) < 900:
        p, a, w, depth = stack.pop()
        for step in range(int(rng.integers(10, 22))):
            a += rng.normal(0, 0.12)
            q = p + 9.0 * np.array([np.sin(a), np.cos(a)])
            if not (0 <= q[0] < shape[0] and 0 <= q[1] < shape[1]):
                break
            segs.append((p, q, w))
            p = q
            if step > 4 and depth < 5 and rng.random() < 0.12:
                stack.append((p.copy(), a + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9), w * 0.72, depth + 1))
                w *= 0.85
        if w > 1.2 and depth < 5:
            stack.append((p, a + rng.normal(0, 0.3), w * 0.8, depth + 1))
    return segs


def _rasterise(segs: list[tuple[np.ndarray, np.ndarray, float]], shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the segments drawn with their widths (one dilation per width class)."""
    out = np.zeros(shape, bool)
    for radius in (1, 2, 3, 4):
        canvas = np.zeros(shape, bool)
        for p, q, w in segs:
            if min(max(round(w / 2), 1), 4) == radius:
                rr, cc = line(int(p[0]), int(p[1]), int(q[0]), int(q[1]))
                ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
                canvas[rr[ok], cc[ok]] = True
        if canvas.any():
            yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
            out |= ndimage.binary_dilation(canvas, structure=yy**2 + xx**2 <= radius**2 + 0.5)
    return out


def fundus_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic fundus photograph, its RITE av colour code and its field of view.

    Returns:
        ``(rgb uint8 584×565×3, av uint8 584×565×3, fov uint8 584×565 with 0/255)``.
    """
    shape = (HEIGHT, WIDTH)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH].astype(np.float32)
    centre = np.array([HEIGHT / 2, WIDTH / 2])
    r = np.hypot(yy - centre[0], xx - centre[1])
    fov = r < 270
    side = rng.choice([-1, 1])
    disc = centre + np.array([rng.uniform(-30, 30), side * rng.uniform(150, 175)])
    rd = np.hypot(yy - disc[0], xx - disc[1])
    arteries, veins = [], []
    for k in range(4):  # upper/lower arcades and nasal branches, arteries and veins side by side
        base = (np.pi / 2 if side < 0 else -np.pi / 2) + [-0.9, 0.9, -2.2, 2.2][k]
        arteries += _grow_tree(rng, disc, base + rng.normal(0, 0.1), 5.0, shape)
        veins += _grow_tree(rng, disc + rng.normal(0, 6, 2), base + rng.normal(0, 0.15), 6.5, shape)
    art, vein = _rasterise(arteries, shape) & fov, _rasterise(veins, shape) & fov

    vignette = np.clip(1.0 - (r / 300) ** 2.2, 0, 1)
    base = np.stack([190 * vignette + 30, 80 * vignette + 15, 30 * vignette + 5], -1)
    tex = ndimage.gaussian_filter(rng.normal(0, 1, shape), 6)[..., None] * 25
    img = base + tex
    img += (np.clip(1 - rd / 45, 0, 1) ** 0.7)[..., None] * np.array([60, 120, 70])  # optic disc
    img[vein] *= np.array([0.55, 0.45, 0.55])
    img[art & ~vein] *= np.array([0.75, 0.6, 0.65])
    img = ndimage.gaussian_filter(img, (0.8, 0.8, 0))
    img += rng.normal(0, 3, img.shape)
    img[~fov] = rng.normal(3, 1.5, (int((~fov).sum()), 3))
    rgb = np.clip(img, 0, 255).astype(np.uint8)

    av = np.zeros((*shape, 3), np.uint8)
    av[art] = (255, 0, 0)
    av[vein] = (0, 0, 255)
    av[art & vein] = (0, 255, 0)
    return rgb, av, (fov * 255).astype(np.uint8)


def write_rite(root: str | Path, train: int = 6, test: int = 2, seed: int = 0) -> dict[str, list[Path]]:
    """Write ``train`` training and ``test`` test images in the RITE layout; returns image paths per split."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[Path]] = {"training": [], "test": []}
    numbers = {"training": range(21, 21 + train), "test": range(1, 1 + test)}
    for split, nums in numbers.items():
        for n in nums:
            name = f"{n:02d}_{split}"
            rgb, av, fov = fundus_image(rng)
            folder = Path(root) / split
            for sub in ("images", "av", "mask"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(folder / "images" / f"{name}.tif", rgb, photometric="rgb")
            iio.imwrite(folder / "av" / f"{name}.png", av)
            iio.imwrite(folder / "mask" / f"{name}_mask.gif", fov)
            out[split].append(folder / "images" / f"{name}.tif")
    return out
