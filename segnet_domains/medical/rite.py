"""RITE retinal artery/vein dataset (built on DRIVE): layout reader and training tasks.

Layout (as downloaded; Hu et al., MICCAI 2013, https://medicine.uiowa.edu/eye/rite-dataset)::

    ROOT/training/images/21_training.tif       565×584 RGB fundus photograph
    ROOT/training/av/21_training.png           RGB colour code (below)
    ROOT/training/mask/21_training_mask.gif    field of view (white inside)
    ROOT/test/images/01_test.tif, test/av/01_test.png, test/mask/01_test_mask.gif

Colour code of ``av``: red artery, blue vein, green crossing, white unknown,
black background. Two tasks:

* ``rite_vessels`` — binary vessel segmentation: any non-black pixel is vessel.
* ``rite_av`` — background / artery / vein / crossing; "unknown" (white)
  pixels are ignored by the loss and the metrics.

Pixels outside the field of view are ignored by the loss and the metrics in
both tasks.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from monai.transforms import (
    RandAdjustContrastd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    RandScaleIntensityd,
    SpatialPadd,
)

from segnet_domains.errors import InputError
from segnet_domains.io.images import read_image
from segnet_domains.training.data import CheckedCacheDataset
from segnet_domains.training.task import Case, Task
from segnet_domains.training.transforms import Normalized

#: Label value of RITE's white "unknown" pixels in the artery/vein task.
UNKNOWN = 255

#: av colour (R, G, B) after thresholding at 128 → artery/vein class.
AV_COLOURS: dict[tuple[int, int, int], int] = {
    (0, 0, 0): 0,  # background
    (1, 0, 0): 1,  # artery (red)
    (0, 0, 1): 2,  # vein (blue)
    (0, 1, 0): 3,  # crossing (green)
    (1, 1, 1): UNKNOWN,  # unknown (white)
}
AV_CLASSES = ["background", "artery", "vein", "crossing"]
AV_RGB = [[0, 0, 0], [230, 25, 40], [30, 80, 230], [40, 200, 60]]

NORMALIZATION = {"mode": "scale", "scale": 255.0}

#: The files of one sample, relative to ROOT (``split`` ``training``/``test``, ``name`` ``21_training``).
FILES = {
    "image": "{split}/images/{name}.tif",
    "av": "{split}/av/{name}.png",
    "fov": "{split}/mask/{name}_mask.gif",
}
#: Number of the first image of each split (DRIVE numbers training 21–40, test 01–20).
FIRST_NUMBER = {"training": 21, "test": 1}


def sample_name(split: str, number: int) -> str:
    """``21_training``, ``01_test``: a sample's name in DRIVE/RITE numbering."""
    return f"{number:02d}_{split}"


def sample_path(root: str | Path, role: str, split: str, name: str) -> Path:
    """The path of one of a sample's files (``role``: ``image``, ``av`` or ``fov``; see :data:`FILES`)."""
    return Path(root) / FILES[role].format(split=split, name=name)


@dataclass
class RiteSample:
    """One RITE image with its annotation and field-of-view files."""

    name: str
    image: Path
    av: Path | None
    fov: Path | None


def find_samples(root: str | Path, split: str) -> list[RiteSample]:
    """Index ``ROOT/<split>/images/*.tif`` with their ``av`` and ``mask`` files.

    Raises:
        InputError: the split folder or its images are missing.
    """
    folder = sample_path(root, "image", split, "x").parent
    if not folder.is_dir():
        raise InputError(folder, "RITE images folder not found (expected ROOT/training|test/images/*.tif)")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    if not images:
        raise InputError(folder, "no images found (expected NN_training.tif / NN_test.tif)")
    out = []
    for img in images:
        av, fov = (sample_path(root, role, split, img.stem) for role in ("av", "fov"))
        out.append(RiteSample(img.stem, img, av if av.is_file() else None, fov if fov.is_file() else None))
    return out


def decode_av(rgb: np.ndarray, source: str) -> np.ndarray:
    """RITE's RGB colour code → artery/vein labels (0 bg, 1 artery, 2 vein, 3 crossing, 255 unknown).

    Raises:
        InputError: not an RGB image, or colours outside the code.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise InputError(source, f"expected an RGB colour-coded label image, got shape {rgb.shape}")
    bits = (rgb[..., :3] >= 128).astype(np.int64)
    code = bits[..., 0] * 4 + bits[..., 1] * 2 + bits[..., 2]
    lut = np.full(8, -1, np.int64)
    for (r, g, b), cls in AV_COLOURS.items():
        lut[r * 4 + g * 2 + b] = cls
    labels = lut[code]
    if (labels < 0).any():
        bad = sorted({tuple(int(v) for v in c) for c in rgb[..., :3][labels < 0][:1000]})[:4]
        raise InputError(
            source,
            f"mask values outside the declared classes: colours {bad} are not red/blue/green/white/black",
        )
    return labels.astype(np.uint8)


@dataclass
class RitePair:
    """Loaded arrays of a sample: ``image`` H×W×3, ``labels`` H×W (task classes), ``fov`` H×W bool."""

    name: str
    image: np.ndarray
    labels: np.ndarray | None
    fov: np.ndarray
    source: Path


def load_pair(sample: RiteSample, vessels: bool) -> RitePair:
    """Read a sample's image, annotation and field of view, checking sizes and values.

    Raises:
        InputError: unreadable file, size mismatch, or unknown colours.
    """
    image = read_image(sample.image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise InputError(sample.image, f"expected an RGB fundus image, got shape {image.shape}")
    hw = image.shape[:2]
    labels = None
    if sample.av is not None:
        av = read_image(sample.av)
        if av.shape[:2] != hw:
            raise InputError(sample.av, f"label size {av.shape[:2]} does not match image size {hw}")
        labels = decode_av(av, str(sample.av))
        if vessels:
            labels = (labels > 0).astype(np.uint8)
    if sample.fov is not None:
        fov_img = read_image(sample.fov)
        fov_img = fov_img[..., 0] if fov_img.ndim == 3 else fov_img
        if fov_img.shape != hw:
            raise InputError(sample.fov, f"field-of-view size {fov_img.shape} does not match image size {hw}")
        fov = fov_img > 0
    else:
        fov = np.ones(hw, bool)
    return RitePair(sample.name, image, labels, fov, sample.image)


class RiteVesselTask(Task):
    """RITE binary vessel segmentation (``task: rite_vessels``) on random foreground-aware patches."""

    name: ClassVar[str] = "rite_vessels"
    vessels: ClassVar[bool] = True
    data_defaults: ClassVar[dict[str, Any]] = {
        "train_split": "training",
        "val_split": "test",
        "patch_size": 256,
        "samples_per_image": 4,
        "pos_fraction": 0.5,
        "cache_rate": 1.0,
        "augment": True,
    }

    def metadata(self) -> dict[str, Any]:
        return {
            "in_channels": 3,
            "out_channels": 2,
            "band_names": ["red", "green", "blue"],
            "class_names": ["background", "vessel"],
            "class_colors": [[0, 0, 0], [255, 60, 60]],
            "normalization": NORMALIZATION,
            "domain": "fundus",
        }

    # ------------------------------------------------------------------ data

    def _pairs(self, split: str, labelled_only: bool) -> Iterator[RitePair]:
        for sample in find_samples(self.data["root"], split):
            if sample.av is None and labelled_only:
                warnings.warn(f"{sample.image}: no av/{sample.name}.png, not used for training", stacklevel=2)
                continue
            try:
                yield load_pair(sample, self.vessels)
            except InputError as exc:
                if not self.data.get("skip_corrupt"):
                    raise
                warnings.warn(f"{exc} — skipped (data.skip_corrupt is true)", stacklevel=2)

    def _train_pairs(self) -> list[RitePair]:
        if not hasattr(self, "_train_cache"):
            self._train_cache = list(self._pairs(self.data["train_split"], labelled_only=True))
            if not self._train_cache:
                raise InputError(
                    Path(self.data["root"]) / self.data["train_split"], "no usable training pairs"
                )
        return self._train_cache

    def train_labels(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for pair in self._train_pairs():
            assert pair.labels is not None
            valid = pair.fov & (pair.labels != UNKNOWN)
            yield pair.labels, valid

    def train_dataset(self) -> CheckedCacheDataset:
        p = int(self.data["patch_size"])
        items = []
        for pair in self._train_pairs():
            assert pair.labels is not None
            items.append(
                {
                    "image": np.moveaxis(pair.image, -1, 0),
                    "label": pair.labels[None].astype(np.int64),
                    "mask": pair.fov[None].astype(np.float32),
                    "source": str(pair.source),
                }
            )
        keys = ["image", "label", "mask"]
        transforms: list[Any] = [
            Normalized("image", NORMALIZATION),
            SpatialPadd(keys, spatial_size=(p, p)),
            RandCropByPosNegLabeld(
                keys,
                label_key="label",
                spatial_size=(p, p),
                pos=float(self.data["pos_fraction"]),
                neg=1.0 - float(self.data["pos_fraction"]),
                num_samples=int(self.data["samples_per_image"]),
            ),
        ]
        if self.data["augment"]:
            transforms += [
                RandFlipd(keys, prob=0.5, spatial_axis=1),
                RandFlipd(keys, prob=0.5, spatial_axis=0),
                RandRotate90d(keys, prob=0.5, max_k=3),
                RandScaleIntensityd("image", factors=0.1, prob=0.5),
                RandAdjustContrastd("image", prob=0.3, gamma=(0.8, 1.25)),
                RandGaussianNoised("image", prob=0.2, std=0.02),
            ]
        return self.cached_dataset(items, transforms, source_key="source")

    def val_cases(self) -> Iterator[Case]:
        for pair in self._pairs(self.data["val_split"], labelled_only=False):
            yield Case(pair.name, pair.image, pair.labels, mask=pair.fov)


class RiteArteryVeinTask(RiteVesselTask):
    """RITE artery/vein/crossing segmentation (``task: rite_av``); white "unknown" pixels ignored."""

    name: ClassVar[str] = "rite_av"
    vessels: ClassVar[bool] = False
    ignore_index: ClassVar[int | None] = UNKNOWN

    def metadata(self) -> dict[str, Any]:
        return {
            **super().metadata(),
            "out_channels": 4,
            "class_names": AV_CLASSES,
            "class_colors": AV_RGB,
        }
