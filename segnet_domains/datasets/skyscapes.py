"""SkyScapes-Dense aerial scenes (``task: skyscapes_dense``).

SkyScapes (Azimi et al., ICCV 2019; DLR, https://www.dlr.de/eoc/en/desktopdefault.aspx/tabid-12760/22294_read-58694/):
16 aerial images of Munich, 5616×3744 px at 13 cm. The dense task has 20
classes: 19 urban-infrastructure classes plus "lane markings" (the 12 lane
types of SkyScapes-Lane merged), encoded 1–20 in the grey label images.

Layout as we understand the release (**unsure**: the release is behind a
registration form; image names such as
``val/images/2012-04-26-Muenchen-Tunnel_4K0G0110.jpg`` are seen in public
code, the label folder name is our best reading — override it with
``data.files: {label: ...}`` if your copy differs)::

    SkyScapes/{train,val}/images/NAME.jpg
    SkyScapes/{train,val}/labels/grayscale/dense/NAME.png    0 = unlabelled (ignored, **unsure**), 1–20

Training uses random patches, validation tiles whole scenes.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from segnet_domains.datasets.layout import RGB, DatasetLayout, dataset_folder
from segnet_domains.datasets.task import BenchmarkTask, Sample
from segnet_domains.io.images import read_image

LAYOUT = DatasetLayout(
    name="SkyScapes-Dense",
    folder="SkyScapes",
    files={"image": "{split}/images/{name}.jpg", "label": "{split}/labels/grayscale/dense/{name}.png"},
    splits={"train": None, "val": None},
    classes=(
        "low_vegetation", "paved_road", "non_paved_road", "paved_parking_place", "non_paved_parking_place",
        "bikeway", "sidewalk", "entrance_exit", "danger_area", "lane_markings", "building", "car",
        "trailer", "van", "truck", "long_truck", "bus", "clutter", "impervious_surface", "tree",
    ),
    colors=(
        (244, 35, 232), (102, 102, 156), (190, 153, 153), (153, 153, 153), (250, 170, 30),
        (152, 251, 152), (70, 130, 180), (107, 142, 35), (220, 220, 0), (255, 0, 0), (220, 20, 60),
        (125, 0, 142), (170, 200, 40), (200, 60, 100), (150, 18, 80), (81, 180, 81), (190, 241, 21),
        (11, 119, 32), (120, 240, 120), (70, 70, 70),
    ),
    bands=RGB,
    label_values={v: v - 1 for v in range(1, 21)},
    ignore_values=(0,),
)  # fmt: skip


class SkyScapesDenseTask(BenchmarkTask):
    """SkyScapes-Dense, 20 classes (the paper's baseline table)."""

    name: ClassVar[str] = "skyscapes_dense"
    layout: ClassVar[DatasetLayout] = LAYOUT
    domain: ClassVar[str | None] = "aerial"

    def index(self, split: str) -> list[Sample]:
        folder = dataset_folder(self.data["root"], LAYOUT, split)
        images = sorted(self.pattern_path(folder, "image", split=split, name="*").parent.glob("*.jpg"))
        return [
            self.require(Sample(p.stem, {r: self.pattern_path(folder, r, split=split, name=p.stem)
                                         for r in ("image", "label")}))
            for p in images
        ]  # fmt: skip

    def read_bands(self, sample: Sample, bands: list[str]) -> np.ndarray:
        return np.moveaxis(read_image(sample.files["image"])[..., :3], -1, 0)[self.layout.band_indices(bands)]
