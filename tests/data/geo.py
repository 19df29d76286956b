"""The geo tests' scenes: small, realistic GeoTIFFs and label rasters from :mod:`segnet_domains.synthetic`.

Scenes look like a Landsat/Sentinel tile: UTM zone 33N (EPSG:32633), 30 m
pixels, uint16 surface reflectance (0–10000) in blue/green/red(/nir) bands,
an irregular nodata border (a rotated swath footprint) declared with
``nodata=0``, tiled and DEFLATE-compressed. The land cover behind it is
:func:`~segnet_domains.synthetic.aerial.land_cover` at a third of the demo's
patch size, rendered by :func:`~segnet_domains.synthetic.aerial.reflectance`;
the truth is numbered in the geo tests' order (:data:`CLASS_NAMES`: 0 soil,
1 water, 2 vegetation, 3 built-up); label rasters are uint8 with 255 = unlabelled.

Used by ``tests/geo`` and ``benchmarks/bench_tile.py``; run as a script to
write a few examples: ``python -m tests.data.geo OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from segnet_domains.geo.dataset import AerialLayout
from segnet_domains.synthetic.aerial import BAND_NAMES, IGNORE, land_cover, reflectance
from segnet_domains.synthetic.fields import footprint
from segnet_domains.synthetic.layouts import CRS, write_geotiff

#: The geo tests' class names (their checkpoints carry them), a reordering of the land-cover classes.
CLASS_NAMES = ["soil", "water", "vegetation", "built"]
#: Each :data:`segnet_domains.synthetic.aerial.CLASS_NAMES` class's index in :data:`CLASS_NAMES`.
FROM_LAND_COVER = np.array([0, 2, 1, 3], np.uint8)


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
    cover = land_cover(np.random.default_rng(seed), (height, width), scale=1 / 3)
    img = reflectance(cover, bands, seed)
    truth = FROM_LAND_COVER[cover]
    if border:
        outside = ~footprint(height, width)
        img[:, outside] = nodata if fill is None and nodata is not None else (fill or 0)
        truth[outside] = IGNORE
    path = write_geotiff(Path(path), img, BAND_NAMES, nodata=nodata, crs=crs)
    return path, truth


def make_label_raster(path: str | Path, labels: np.ndarray, **kwargs) -> Path:
    """Write an ``H×W`` uint8 label raster (255 = unlabelled) georeferenced like :func:`make_scene`."""
    return write_geotiff(Path(path), labels.astype(np.uint8), nodata=IGNORE, **kwargs)


def truncate(src: Path, dst: Path, keep: float = 0.5) -> Path:
    """Copy the first ``keep`` fraction of a file (a download cut short)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)


def make_aerial_dataset(root: str | Path, n: int = 3, size: int = 96, bands: int = 3, seed: int = 0) -> Path:
    """``root/images/*.tif`` + ``root/labels/*.tif`` pairs matched by name (TLCGIS/SkyScapes layout)."""
    layout = AerialLayout()
    for folder in (layout.images, layout.labels):
        (Path(root) / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = f"scene_{i:02d}.tif"
        _, truth = make_scene(Path(root) / layout.images / name, size, size + 16 * i, bands, seed + i)
        make_label_raster(Path(root) / layout.labels / name, truth)
    return Path(root)


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
