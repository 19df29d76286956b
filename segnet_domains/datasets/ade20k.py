"""ADE20K scene parsing (MIT SceneParsing benchmark release) as distributed (``task: ade20k``).

Layout (Zhou et al., CVPR 2017; http://sceneparsing.csail.mit.edu/)::

    ADEChallengeData2016/images/training/ADE_train_00000001.jpg        (20 210 images)
    ADEChallengeData2016/images/validation/ADE_val_00000001.jpg        (2 000 images)
    ADEChallengeData2016/annotations/training/ADE_train_00000001.png   grey 0–150, 0 = "other" (ignored)
    ADEChallengeData2016/objectInfo150.txt   "Idx Ratio Train Val Name" (tab-separated), one row per class

Class names are read from ``objectInfo150.txt`` (the first synonym of each
``Name``); colours are a fixed palette (the release has none).
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import ClassVar

import numpy as np

from segnet_domains.datasets.layout import RGB, DatasetLayout, dataset_folder
from segnet_domains.datasets.task import BenchmarkTask, Sample
from segnet_domains.errors import InputError
from segnet_domains.io.images import read_image

NUM_CLASSES = 150
OBJECT_INFO = "objectInfo150.txt"


def palette(k: int) -> tuple[tuple[int, int, int], ...]:
    """``k`` distinct colours (golden-ratio hues, two brightness levels)."""
    out = []
    for i in range(k):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95 if i % 2 else 0.7)
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(out)


LAYOUT = DatasetLayout(
    name="ADE20K",
    folder="ADEChallengeData2016",
    files={"image": "images/{split}/{name}.jpg", "label": "annotations/{split}/{name}.png"},
    splits={"training": None, "validation": None},
    split_aliases={"train": "training", "val": "validation"},
    classes=tuple(f"class_{i}" for i in range(1, NUM_CLASSES + 1)),  # names: objectInfo150.txt
    colors=palette(NUM_CLASSES),
    bands=RGB,
    label_values={v: v - 1 for v in range(1, NUM_CLASSES + 1)},
    ignore_values=(0,),
)


def read_object_info(path: Path) -> list[str]:
    """The 150 class names of ``objectInfo150.txt`` (first synonym of each row, by ``Idx``).

    Raises:
        InputError: missing file or not 150 rows.
    """
    if not path.is_file():
        raise InputError(path, "ADE20K class list not found")
    rows = {}
    for line in path.read_text().splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) >= 5 and cols[0].strip().isdigit():
            rows[int(cols[0])] = cols[4].split(";")[0].strip()
    if sorted(rows) != list(range(1, NUM_CLASSES + 1)):
        raise InputError(path, f"expected rows Idx 1..{NUM_CLASSES}, found {len(rows)}")
    return [rows[i] for i in range(1, NUM_CLASSES + 1)]


class Ade20kTask(BenchmarkTask):
    """ADE20K 150-class scene parsing (the benchmark's baseline table)."""

    name: ClassVar[str] = "ade20k"
    layout: ClassVar[DatasetLayout] = LAYOUT

    def folder(self) -> Path:
        return dataset_folder(self.data["root"], LAYOUT, "images")

    def index(self, split: str) -> list[Sample]:
        folder = self.folder()
        images = sorted(self.pattern_path(folder, "image", split=split, name="*").parent.glob("*.jpg"))
        return [
            self.require(Sample(p.stem, {r: self.pattern_path(folder, r, split=split, name=p.stem)
                                         for r in ("image", "label")}))
            for p in images
        ]  # fmt: skip

    def metadata(self) -> dict:
        return {**super().metadata(), "class_names": read_object_info(self.folder() / OBJECT_INFO)}

    def read_bands(self, sample: Sample, bands: list[str]) -> np.ndarray:
        img = read_image(sample.files["image"])
        if img.ndim == 2:  # a few ADE20K JPEGs are greyscale
            img = np.repeat(img[..., None], 3, axis=-1)
        return np.moveaxis(img[..., :3], -1, 0)[self.layout.band_indices(bands)]
