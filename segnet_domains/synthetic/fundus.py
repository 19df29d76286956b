"""Fundus photographs with artery/vein annotations in RITE's colour code, and their field of view.

* :func:`fundus_image` — a RITE-sized (565×584) photograph: circular field of
  view, orange-red background with vignetting, a bright optic disc, and
  artery and vein trees growing from the disc with tapering widths. The
  demo trains and scores on it; the web page offers it as a sample.
* :func:`rite_scene` — a miniature (64×72 by default) with straight thick
  arteries and veins, a crossing and a few white "unknown" pieces: every
  class of the colour code in a few thousand pixels, for layout and
  training tests.

Both return ``(rgb H×W×3 uint8, av H×W×3 uint8, fov H×W uint8 0/255)``; the
``av`` colours are those :func:`segnet_domains.medical.rite.decode_av` reads.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.draw import disk, line

#: RITE's image size (rows, columns).
HEIGHT, WIDTH = 584, 565
#: Size of :func:`rite_scene`'s miniature (rows, columns).
MINI_SIZE = (64, 72)
#: The ``av`` colour code: red artery, blue vein, green crossing, white unknown.
RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


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
    av[art] = RED
    av[vein] = BLUE
    av[art & vein] = GREEN
    return rgb, av, (fov * 255).astype(np.uint8)


def _thick_line(canvas: np.ndarray, r0: int, c0: int, r1: int, c1: int, colour: tuple[int, ...]) -> None:
    h, w = canvas.shape[:2]
    for dr, dc in ((0, 0), (1, 0), (0, 1), (1, 1)):
        rr, cc = line(r0 + dr, c0 + dc, r1 + dr, c1 + dc)
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        canvas[rr[ok], cc[ok]] = colour


def rite_scene(rng: np.random.Generator, size: tuple[int, int] = MINI_SIZE) -> tuple[np.ndarray, ...]:
    """``(image H×W×3 uint8, av H×W×3 uint8, fov H×W uint8)`` with arteries, veins, a crossing, unknowns."""
    h, w = size
    av = np.zeros((h, w, 3), np.uint8)
    for colour in (RED, BLUE, RED, BLUE):
        r0, r1 = rng.integers(0, h, 2)
        _thick_line(av, int(r0), 0, int(r1), w - 1, colour)
    for _ in range(2):  # a few unlabeled (white) vessel pieces
        c = int(rng.integers(4, w - 4))
        _thick_line(av, 0, c, h // 3, c + int(rng.integers(-3, 4)), WHITE)
    both = (av == RED).all(-1) & np.roll((av == BLUE).all(-1), 1, axis=0)
    av[both] = GREEN
    fov = np.zeros((h, w), np.uint8)
    rr, cc = disk(((h - 1) / 2, (w - 1) / 2), min(h, w) * 0.55, shape=(h, w))
    fov[rr, cc] = 255
    vessel = av.any(-1)
    base = np.array([200, 90, 40], np.float32)
    img = base + rng.normal(0, 8, (h, w, 3))
    img[vessel] -= np.array([90, 50, 20], np.float32)
    img[(av == RED).all(-1)] += np.array([30, 0, 0], np.float32)  # arteries a bit redder
    img[fov == 0] = 0
    return np.clip(img, 0, 255).astype(np.uint8), av, fov
