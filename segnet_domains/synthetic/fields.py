"""Primitives the generators share: smooth random fields, ellipsoid distances, a rotated footprint."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: int, sigma: float) -> np.ndarray:
    """Smooth random field in [-1, 1]: coarse noise, blurred, upsampled to ``shape`` (float32)."""
    small = [max(2, s // coarse) for s in shape]
    field = ndimage.gaussian_filter(rng.normal(size=small), sigma)
    field = ndimage.zoom(field, [s / m for s, m in zip(shape, small)], order=1)
    field = field[tuple(slice(0, s) for s in shape)]
    return (field / (np.abs(field).max() + 1e-6)).astype(np.float32)


def zscore_field(
    rng: np.random.Generator, shape: tuple[int, int], sigma: float, mode: str = "reflect", eps: float = 1e-6
) -> np.ndarray:
    """White noise blurred by ``sigma`` pixels, standardised to mean 0 and standard deviation 1."""
    f = ndimage.gaussian_filter(rng.normal(size=shape), sigma, mode=mode)
    return (f - f.mean()) / (f.std() + eps)


def ellipsoid(grid: Sequence[np.ndarray], centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """``Σ ((x_i - c_i) / r_i)²`` over the axes of ``grid``: below 1 inside the ellipsoid."""
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii))  # type: ignore[return-value]


def footprint(
    height: int,
    width: int,
    angle: float = 12.0,
    half: float = 0.42,
    centre: tuple[float, float] | None = None,
) -> np.ndarray:
    """``H×W`` bool: a satellite swath, a rectangle rotated by ``angle`` degrees, leaving nodata corners.

    Args:
        height, width: raster size.
        angle: rotation in degrees.
        half: half-size of the rectangle as a fraction of the raster's size.
        centre: ``(row, column)`` of the rotation centre (default: the middle pixel, ``((H-1)/2, (W-1)/2)``).
    """
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    cy, cx = centre if centre is not None else ((height - 1) / 2, (width - 1) / 2)
    a = np.deg2rad(angle)
    u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
    v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
    return (np.abs(u) < half * width) & (np.abs(v) < half * height)
