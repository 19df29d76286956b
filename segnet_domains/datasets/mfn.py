"""MFNet RGB-thermal urban scenes as distributed (``task: mfn``).

Layout (Ha et al., IROS 2017; https://www.mi.t.u-tokyo.ac.jp/static/projects/mil_multispectral/,
as read by MFNet-pytorch and RTFNet's ``MF_dataset``)::

    ROOT/images/00001D.png   480×640 4-channel PNG: R, G, B, thermal (8-bit each)
    ROOT/labels/00001D.png   grey labels 0–8 (0 = unlabelled, a class of its own)
    ROOT/train.txt, val.txt, test.txt, test_day.txt, test_night.txt   one name per line

All nine classes count, "unlabelled" included, as RTFNet's Table III
computes mIoU. ``data.bands: [red, green, blue]`` trains the RGB-only
SegNet of the same table.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from segnet_domains.datasets.layout import RGB, Band, DatasetLayout, dataset_folder, read_index
from segnet_domains.datasets.task import BenchmarkTask, Sample
from segnet_domains.errors import InputError
from segnet_domains.io.images import read_image

LAYOUT = DatasetLayout(
    name="MFN",
    folder="ir_seg_dataset",
    files={"image": "images/{name}.png", "label": "labels/{name}.png"},
    splits={s: f"{s}.txt" for s in ("train", "val", "test", "test_day", "test_night")},
    classes=("unlabelled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump"),
    colors=(
        (0, 0, 0), (64, 0, 128), (64, 64, 0), (0, 128, 192), (0, 0, 192),
        (128, 128, 0), (64, 64, 128), (192, 128, 128), (192, 64, 0),
    ),
    bands=(*RGB, Band("thermal")),
    label_values={v: v for v in range(9)},
)  # fmt: skip


class MfnTask(BenchmarkTask):
    """MFN RGB-thermal segmentation, 9 classes (RTFNet Table III)."""

    name: ClassVar[str] = "mfn"
    layout: ClassVar[DatasetLayout] = LAYOUT

    def index(self, split: str) -> list[Sample]:
        folder = dataset_folder(self.data["root"], LAYOUT, LAYOUT.splits[split] or "")
        names = [line[0] for line in read_index(folder / (LAYOUT.splits[split] or ""))]
        return [
            self.require(Sample(n, {r: self.pattern_path(folder, r, name=n) for r in ("image", "label")}))
            for n in names
        ]

    def read_bands(self, sample: Sample, bands: list[str]) -> np.ndarray:
        img = read_image(sample.files["image"], keep_alpha=True)
        if img.ndim != 3 or img.shape[-1] != 4:
            raise InputError(
                sample.files["image"], f"expected a 4-channel RGB-thermal PNG, got shape {img.shape}"
            )
        return np.moveaxis(img, -1, 0)[self.layout.band_indices(bands)]
