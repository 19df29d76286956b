"""Landsat-like scenes: 4-band uint16 GeoTIFFs in UTM at 30 m, with land-cover label rasters.

Land cover comes from smooth random fields (rivers and lakes, vegetation
patches, a grid of built-up blocks, bare soil elsewhere); each class has a
spectral signature in blue/green/red/near-infrared reflectance (×10000, as
Landsat/Sentinel-2 surface reflectance) with texture and sensor noise. The
scene footprint is a rotated swath, so the border is nodata (0 in every band;
255 in the label raster), as in a real path/row tile. Layout::

    ROOT/images/scene_01.tif   uint16, 4 bands, EPSG:32633, 30 m pixels, nodata 0
    ROOT/labels/scene_01.tif   uint8 class per pixel, nodata 255
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

CLASS_NAMES = ["bare soil", "vegetation", "water", "built-up"]
CLASS_COLORS = [[200, 170, 120], [40, 150, 40], [30, 90, 200], [220, 40, 40]]
BAND_NAMES = ["blue", "green", "red", "nir"]
IGNORE = 255
CRS = "EPSG:32633"
PIXEL = 30.0
#: Mean surface reflectance (×10000) per class and band (blue, green, red, NIR).
SIGNATURES = np.array(
    [[900, 1100, 1400, 2200], [400, 800, 500, 3800], [700, 600, 400, 150], [1300, 1400, 1500, 1700]],
    np.float32,
)


def _field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (f - f.mean()) / (f.std() + 1e-6)


def land_cover(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A plausible class map: bare soil, vegetation patches, water bodies, built-up blocks."""
    labels = np.zeros(shape, np.uint8)
    labels[_field(rng, shape, 18) > 0.2] = 1  # vegetation
    town = _field(rng, shape, 40) > 0.9
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blocks = ((yy // 9) % 3 != 0) & ((xx // 9) % 3 != 0)  # blocks separated by streets
    labels[town & blocks] = 3
    labels[town & ~blocks] = 0  # streets: bare/paved
    labels[_field(rng, shape, 25) > 1.5] = 2  # lakes
    river = np.abs(_field(rng, shape, 60)) < 0.05
    labels[ndimage.binary_dilation(river, iterations=2)] = 2
    return labels


def scene(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(bands uint16 4×H×W with 0 = nodata, labels uint8 H×W with 255 = nodata)``."""
    labels = land_cover(rng, shape)
    bands = SIGNATURES[labels].transpose(2, 0, 1)  # 4×H×W
    texture = 1.0 + 0.12 * _field(rng, shape, 3)[None]
    bands = bands * texture + rng.normal(0, 60, bands.shape)
    bands = ndimage.gaussian_filter(bands, (0, 0.6, 0.6))
    # rotated swath footprint: the corners are outside the acquisition
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    theta = np.deg2rad(rng.uniform(8, 14))
    u = (xx - w / 2) * np.cos(theta) + (yy - h / 2) * np.sin(theta)
    v = -(xx - w / 2) * np.sin(theta) + (yy - h / 2) * np.cos(theta)
    inside = (np.abs(u) < w * 0.46) & (np.abs(v) < h * 0.46)
    out = np.clip(bands, 1, 65535).astype(np.uint16)
    out[:, ~inside] = 0
    labels = labels.copy()
    labels[~inside] = IGNORE
    return out, labels


def write_scene(
    image_path: Path,
    label_path: Path | None,
    bands: np.ndarray,
    labels: np.ndarray,
    origin: tuple[float, float],
) -> None:
    """Write a scene (tiled, deflate) and its label raster with the same grid and CRS."""
    transform = from_origin(origin[0], origin[1], PIXEL, PIXEL)
    profile = dict(
        driver="GTiff",
        width=bands.shape[2],
        height=bands.shape[1],
        crs=CRS,
        transform=transform,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    image_path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(image_path, "w", count=4, dtype="uint16", nodata=0, **profile) as dst:
        dst.write(bands)
        dst.descriptions = tuple(BAND_NAMES)
    if label_path is not None:
        label_path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(label_path, "w", count=1, dtype="uint8", nodata=IGNORE, **profile) as dst:
            dst.write(labels[None])
            dst.write_colormap(1, {i: (*c, 255) for i, c in enumerate(CLASS_COLORS)})


def write_aerial(
    root: str | Path, scenes: int = 3, size: tuple[int, int] = (768, 768), seed: int = 0
) -> list[tuple[Path, Path]]:
    """Write ``scenes`` image/label pairs under ``root/images`` and ``root/labels``."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(1, scenes + 1):
        bands, labels = scene(rng, size)
        img, lab = Path(root) / "images" / f"scene_{i:02d}.tif", Path(root) / "labels" / f"scene_{i:02d}.tif"
        origin = (500000.0 + 40000 * i, 5200000.0)
        write_scene(img, lab, bands, labels, origin)
        pairs.append((img, lab))
    return pairs
