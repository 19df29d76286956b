"""Generator of small but realistic GeoTIFF scenes and label rasters for the geo tests.

Scenes look like a Landsat/Sentinel tile: UTM zone 33N (EPSG:32633), 30 m
pixels, uint16 surface reflectance (0–10000) in blue/green/red(/nir) bands,
an irregular nodata border (a rotated swath footprint) declared with
``nodata=0``, tiled and DEFLATE-compressed. The land cover behind it is a
smooth random field cut into classes (0 background/soil, 1 water,
2 vegetation, 3 built-up); label rasters are uint8 with 255 = unlabelled.

Used by ``tests/geo`` and ``benchmarks/bench_tile.py``; run as a script to
write a few examples: ``python -m tests.data.geo OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy import ndimage

CRS = "EPSG:32633"
PIXEL = 30.0
ORIGIN = (399960.0, 5100000.0)  # upper-left corner, metres (UTM 33N, central Europe)
CLASS_NAMES = ["soil", "water", "vegetation", "built"]
BAND_NAMES = ["blue", "green", "red", "nir"]
UNLABELLED = 255

#: Mean reflectance (×10000) of each class in blue, green, red, nir.
REFLECTANCE = np.array(
    [
        [900, 1200, 1500, 2200],  # soil
        [600, 800, 500, 300],  # water
        [400, 800, 500, 3500],  # vegetation
        [1400, 1500, 1600, 1800],  # built
    ],
    dtype=np.float64,
)


def land_cover(height: int, width: int, seed: int = 0, smooth: float = 6.0) -> np.ndarray:
    """``H×W`` uint8 classes 0–3 from a smoothed random field (water rarest)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(height, width)), smooth, mode="wrap")
    field = (field - field.mean()) / (field.std() + 1e-9)
    built = ndimage.gaussian_filter(rng.normal(size=(height, width)), smooth / 2, mode="wrap")
    built = (built - built.mean()) / (built.std() + 1e-9)
    classes = np.zeros((height, width), np.uint8)
    classes[field > 0.3] = 2
    classes[field < -1.3] = 1
    classes[(built > 1.2) & (classes == 0)] = 3
    return classes


def reflectance(classes: np.ndarray, bands: int = 3, seed: int = 0) -> np.ndarray:
    """``bands×H×W`` uint16 reflectance for a class map, with sensor noise."""
    rng = np.random.default_rng(seed + 1)
    mean = REFLECTANCE[classes][..., :bands]  # H×W×bands
    img = mean + rng.normal(0, 120, mean.shape)
    return np.clip(np.moveaxis(img, -1, 0), 1, 10000).astype(np.uint16)


def footprint(height: int, width: int, angle: float = 12.0, margin: float = 0.08) -> np.ndarray:
    """``H×W`` bool: the valid swath, a rotated rectangle leaving nodata corners and edges."""
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    a = np.deg2rad(angle)
    u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
    v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
    return (np.abs(u) < (0.5 - margin) * width) & (np.abs(v) < (0.5 - margin) * height)


def profile(
    height: int,
    width: int,
    count: int,
    dtype: str = "uint16",
    nodata: float | None = 0,
    crs: str | None = CRS,
    blocksize: int = 256,
) -> dict:
    """A GTiff profile with realistic georeferencing."""
    p = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": count,
        "dtype": dtype,
        "compress": "deflate",
    }
    if min(height, width) >= blocksize:
        p.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    if nodata is not None:
        p["nodata"] = nodata
    if crs is not None:
        p.update(crs=crs, transform=Affine.translation(*ORIGIN) @ Affine.scale(PIXEL, -PIXEL))
    return p


def write_raster(path: Path, array: np.ndarray, descriptions: list[str] | None = None, **kwargs) -> Path:
    """Write ``C×H×W`` (or ``H×W``) ``array`` with :func:`profile` (``kwargs`` override it)."""
    arr = array[None] if array.ndim == 2 else array
    prof = profile(arr.shape[1], arr.shape[2], arr.shape[0], str(arr.dtype), **kwargs)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr)
        if descriptions:
            dst.descriptions = tuple(descriptions[: arr.shape[0]])
    return Path(path)


def make_scene(
    path: str | Path,
    height: int = 300,
    width: int = 400,
    bands: int = 3,
    seed: int = 0,
    nodata: int | None = 0,
    border: bool = True,
    crs: str | None = CRS,
    fill: int | None = None,
) -> tuple[Path, np.ndarray]:
    """Write a scene GeoTIFF; returns ``(path, H×W class map)`` (255 where nodata).

    Args:
        nodata: declared nodata value (``None``: undeclared).
        border: blank an irregular border with ``fill`` (default: ``nodata`` or 0).
        fill: value written in the border pixels.
    """
    classes = land_cover(height, width, seed)
    img = reflectance(classes, bands, seed)
    truth = classes.copy()
    if border:
        outside = ~footprint(height, width)
        img[:, outside] = nodata if fill is None and nodata is not None else (fill or 0)
        truth[outside] = UNLABELLED
    path = write_raster(Path(path), img, BAND_NAMES, nodata=nodata, crs=crs)
    return path, truth


def make_label_raster(path: str | Path, labels: np.ndarray, **kwargs) -> Path:
    """Write an ``H×W`` uint8 label raster (255 = unlabelled) georeferenced like :func:`make_scene`."""
    return write_raster(Path(path), labels.astype(np.uint8), nodata=UNLABELLED, **kwargs)


def truncate(src: Path, dst: Path, keep: float = 0.5) -> Path:
    """Copy the first ``keep`` fraction of a file (a download cut short)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)


def make_aerial_dataset(root: str | Path, n: int = 3, size: int = 96, bands: int = 3, seed: int = 0) -> Path:
    """``root/images/*.tif`` + ``root/labels/*.tif`` pairs matched by name (TLCGIS/SkyScapes layout)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _, truth = make_scene(root / "images" / f"scene_{i:02d}.tif", size, size + 16 * i, bands, seed + i)
        make_label_raster(root / "labels" / f"scene_{i:02d}.tif", truth)
    return root


def make_checkpoint(
    path: str | Path, bands: int = 3, dropout: float = 0.2, seed: int = 0, **metadata
) -> Path:
    """An untrained tiny aerial SegNet checkpoint (``bands`` → 4 land-cover classes)."""
    import torch

    from segnet_domains import SegNet, save_checkpoint

    torch.manual_seed(seed)
    model = SegNet(bands, len(CLASS_NAMES), features=(8, 16, 32, 32, 32), dropout=dropout)
    metadata.setdefault("normalization", {"mode": "percentile", "lower": 1.0, "upper": 99.0})
    return save_checkpoint(
        path, model, class_names=CLASS_NAMES, band_names=BAND_NAMES[:bands], domain="aerial", **metadata
    )


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "geo_examples")
    out.mkdir(parents=True, exist_ok=True)
    p, _ = make_scene(out / "scene.tif", 1024, 1280)
    make_aerial_dataset(out / "aerial")
    print(f"wrote {p} and {out / 'aerial'}")
