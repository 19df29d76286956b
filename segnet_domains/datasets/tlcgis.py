"""TLCGIS aerial road segmentation from RGB and lidar (``task: tlcgis``).

Layout as distributed (SIGSPATIAL 2018 release ``fusion_lidar_images_sigspatial18``)::

    fusion_lidar_images_sigspatial18/rgb/ID.png         500×500 RGB orthophoto tile
    fusion_lidar_images_sigspatial18/depth_lpu/ID.png   500×500 lidar raster (8-bit grey)
    fusion_lidar_images_sigspatial18/mask/ID.png        road = 0, anything else = not road
    fusion_lidar_images_sigspatial18/train.txt, valid.txt, test.txt   one ID per line

Two classes, background and road; the published figure is the road IoU.
The lidar raster is the fourth input band (``data.bands: [red, green, blue]``
trains on the orthophoto alone). **Unsure:** the non-road value of the
masks (we accept any non-zero value and write 255) and whether index lines
carry the ``.png`` suffix (both are accepted).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from segnet_domains.datasets.layout import RGB, Band, DatasetLayout, dataset_folder, read_index
from segnet_domains.datasets.task import BenchmarkTask, Sample
from segnet_domains.errors import InputError
from segnet_domains.io.images import read_image

LAYOUT = DatasetLayout(
    name="TLCGIS",
    folder="fusion_lidar_images_sigspatial18",
    files={"image": "rgb/{name}.png", "lidar": "depth_lpu/{name}.png", "label": "mask/{name}.png"},
    splits={"train": "train.txt", "valid": "valid.txt", "test": "test.txt"},
    split_aliases={"val": "valid"},
    classes=("background", "road"),
    colors=((0, 0, 0), (255, 200, 0)),
    bands=(*RGB, Band("lidar")),
    label_values={0: 1, **{v: 0 for v in range(1, 256)}},
)


class TlcgisTask(BenchmarkTask):
    """TLCGIS road / background from orthophoto + lidar."""

    name: ClassVar[str] = "tlcgis"
    layout: ClassVar[DatasetLayout] = LAYOUT
    domain: ClassVar[str | None] = "aerial"

    def index(self, split: str) -> list[Sample]:
        folder = dataset_folder(self.data["root"], LAYOUT, LAYOUT.splits[split] or "")
        names = [Path(line[0]).stem for line in read_index(folder / (LAYOUT.splits[split] or ""))]
        roles = ("image", "lidar", "label")
        return [
            self.require(Sample(n, {r: self.pattern_path(folder, r, name=n) for r in roles})) for n in names
        ]

    def read_bands(self, sample: Sample, bands: list[str]) -> np.ndarray:
        rgb = read_image(sample.files["image"])
        if rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise InputError(sample.files["image"], f"expected an RGB tile, got shape {rgb.shape}")
        layers = list(np.moveaxis(rgb, -1, 0))
        if "lidar" in bands:
            lidar = read_image(sample.files["lidar"])
            lidar = lidar[..., 0] if lidar.ndim == 3 else lidar
            if lidar.shape != rgb.shape[:2]:
                raise InputError(sample.files["lidar"], f"size {lidar.shape} differs from the RGB tile's")
            layers.append(lidar)
        names = [b.name for b in self.layout.bands if b.name != "lidar" or "lidar" in bands]
        return np.stack([layers[names.index(b)] for b in bands])
