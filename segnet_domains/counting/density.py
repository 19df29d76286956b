"""Gaussian density targets from head points: the map a counting SegNet learns to predict.

Each head becomes a 2D Gaussian that sums to one, so the map's sum is the
count. Two kernels:

* ``"adaptive"`` — the geometry-adaptive kernel of MCNN (Zhang et al., CVPR
  2016, §3.1), also used by CSRNet: ``σ_i = β · d̄_i`` with ``d̄_i`` the mean
  distance from head ``i`` to its ``k`` nearest heads (``β = 0.3``, ``k = 3``),
  clipped to ``[sigma_min, sigma_max]``; a lone head gets ``fixed_sigma``.
  Idrees et al. (ECCV 2018), the UCF-QNRF paper, also build its density
  levels with kernels that adapt to the distance between neighbouring heads;
  the exact widths of its composition loss were not verified here.
* a number — one fixed σ for every head.

Unlike a ``gaussian_filter`` over a delta map, every kernel is renormalised
over the pixels inside the image, so heads at the border keep their full
mass and the map sums to the number of heads exactly (what MAE is measured
against). :func:`density_map` can draw only a window of the image (a training
crop) from the same kernels, so crops never need the whole map.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

#: Defaults of the geometry-adaptive kernel (MCNN): β, k, and the clipping range of σ.
BETA, KNN, SIGMA_MIN, SIGMA_MAX, FIXED_SIGMA = 0.3, 3, 1.0, 30.0, 4.0


def kernel_sigmas(
    points: np.ndarray,
    sigma: str | float = "adaptive",
    k: int = KNN,
    beta: float = BETA,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    fixed_sigma: float = FIXED_SIGMA,
) -> np.ndarray:
    """The Gaussian width of every head (``N`` floats).

    Args:
        points: ``N×2`` head positions ``(x, y)`` in pixels.
        sigma: ``"adaptive"`` or one fixed width.
        k: neighbours averaged by the adaptive kernel (fewer if the image has fewer heads).
        beta: the adaptive kernel's factor.
        sigma_min: smallest adaptive width.
        sigma_max: largest adaptive width.
        fixed_sigma: width of a head without neighbours.
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    n = len(points)
    if sigma != "adaptive":
        return np.full(n, float(sigma))
    if n < 2:
        return np.full(n, float(fixed_sigma))
    kk = min(k, n - 1)
    dist, _ = cKDTree(points).query(points, k=kk + 1)  # the first neighbour is the head itself
    mean = np.asarray(dist, np.float64).reshape(n, kk + 1)[:, 1:].mean(axis=1)
    return np.clip(beta * mean, sigma_min, sigma_max)


def _gauss(centre: float, sigma: float, lo: int, hi: int) -> np.ndarray:
    x = np.arange(lo, hi, dtype=np.float64)
    return np.exp(-0.5 * ((x - centre) / sigma) ** 2)


def density_map(
    points: np.ndarray,
    shape: tuple[int, int],
    sigmas: np.ndarray | None = None,
    window: tuple[int, int, int, int] | None = None,
    truncate: float = 3.0,
) -> np.ndarray:
    """Density map of heads: one Gaussian per head, each summing to 1 over the image.

    Args:
        points: ``N×2`` ``(x, y)``, 0 = centre of the first pixel. Heads outside
            the image (more than half a pixel beyond an edge) are left out.
        shape: the image's ``(H, W)``.
        sigmas: per-head widths (default: :func:`kernel_sigmas` adaptive).
        window: ``(top, left, height, width)``: draw only this part of the
            image's map (a training crop); the kernels are still normalised
            over the whole image.
        truncate: kernels reach ``truncate · σ`` pixels (at least one).

    Returns:
        ``height×width`` float32 (the window, or the whole image).
    """
    h, w = int(shape[0]), int(shape[1])
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if sigmas is None:
        sigmas = kernel_sigmas(points)
    top, left, wh, ww = window if window is not None else (0, 0, h, w)
    out = np.zeros((wh, ww), np.float64)
    inside = (
        (points[:, 0] >= -0.5) & (points[:, 0] < w - 0.5) & (points[:, 1] >= -0.5) & (points[:, 1] < h - 0.5)
    )
    for (x, y), s in zip(points[inside], np.asarray(sigmas, np.float64)[inside]):
        r = max(1, math.ceil(truncate * s))
        r0, r1 = max(0, round(y) - r), min(h, round(y) + r + 1)
        c0, c1 = max(0, round(x) - r), min(w, round(x) + r + 1)
        gy, gx = _gauss(y, s, r0, r1), _gauss(x, s, c0, c1)
        mass = gy.sum() * gx.sum()  # the kernel's mass inside the image
        # the part of the kernel inside the window
        a0, a1 = max(r0, top), min(r1, top + wh)
        b0, b1 = max(c0, left), min(c1, left + ww)
        if a0 >= a1 or b0 >= b1:
            continue
        out[a0 - top : a1 - top, b0 - left : b1 - left] += (
            np.outer(gy[a0 - r0 : a1 - r0], gx[b0 - c0 : b1 - c0]) / mass
        )
    return out.astype(np.float32)
