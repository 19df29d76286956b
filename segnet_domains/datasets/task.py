"""The shared task of the 2D benchmark families: index, read, train, validate, export.

A family subclasses :class:`BenchmarkTask`, sets ``layout`` (its
:class:`~segnet_domains.datasets.layout.DatasetLayout`) and implements
:meth:`~BenchmarkTask.index` (the samples of a split) and
:meth:`~BenchmarkTask.read_bands` (the raw ``C×H×W`` bands of a sample); a
label reader other than "a grey PNG" overrides :meth:`~BenchmarkTask.read_native_label`.

Everything else is here once: the checkpoint metadata from the layout,
MONAI training transforms (load → per-band normalisation → optional resize
to the paper's input size → optional random patches → flips), validation
cases, median-frequency statistics and prediction (resized input with
probabilities upsampled back to the annotation's size, or tiled for big
aerial scenes).

Config keys (``data.*``): ``train_split``/``val_split``; ``bands`` (names,
e.g. ``[red, green, blue, depth]``; default the layout's); ``size``
(``[H, W]`` the network sees, as the paper resized; ``null`` = native);
``patch_size``/``samples_per_image`` (random square crops, for big scenes);
``augment`` (horizontal flip; ``aerial`` flips and rotates); ``cache_rate``;
``tile_size``/``tile_overlap`` (tiled validation of scenes larger than a
tile); ``files`` (override a role's file pattern, e.g. where a release
renamed a folder).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import (
    MapTransform,
    RandFlipd,
    RandRotate90d,
    RandSpatialCropSamplesd,
    Resized,
    SpatialPadd,
)

from segnet_domains.datasets.layout import IGNORE, DatasetLayout
from segnet_domains.errors import InputError
from segnet_domains.inference import Segmenter, labels_from_proba
from segnet_domains.io.images import read_image
from segnet_domains.training.data import CheckedCacheDataset
from segnet_domains.training.task import Case, Task
from segnet_domains.training.transforms import Normalized


@dataclass
class Sample:
    """One indexed sample: its name and its files by role (``image``, ``label``, ``depth`` …).

    ``extra`` carries what a reader needs beyond paths (SUN-RGBD: the row of
    the sample in ``SUNRGBD2Dseg.mat``).
    """

    name: str
    files: dict[str, Path]
    extra: dict[str, Any] = field(default_factory=dict)


class LoadSampled(MapTransform):
    """MONAI transform: a ``{"sample": Sample}`` item → ``image`` ``C×H×W`` and ``label`` ``1×H×W``.

    The task reads the bands and maps the native labels to training classes
    (:data:`~segnet_domains.datasets.layout.IGNORE` for void). Deterministic,
    so MONAI's cache keeps the result.
    """

    def __init__(self, task: BenchmarkTask) -> None:
        super().__init__(["sample"])
        self.task = task

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        sample: Sample = d.pop("sample")
        image, label = self.task.load(sample)
        d["image"] = image.astype(np.float32)
        d["label"] = label[None].astype(np.int64)
        return d


class BenchmarkTask(Task):
    """Base of the 2D benchmark tasks; see the module docstring."""

    layout: ClassVar[DatasetLayout]
    include_background: ClassVar[bool] = True  # every class of a scene-parsing benchmark counts
    best_metric: ClassVar[str] = "miou"
    ignore_index: ClassVar[int | None] = IGNORE
    #: checkpoint ``domain`` (``None``: street or indoor scenes, not one of mri/fundus/aerial).
    domain: ClassVar[str | None] = None
    data_defaults: ClassVar[dict[str, Any]] = {
        "train_split": "train",
        "val_split": "val",
        "bands": None,
        "size": None,
        "patch_size": None,
        "samples_per_image": 1,
        "augment": True,
        "cache_rate": 1.0,
        "tile_size": None,
        "tile_overlap": None,
        "files": None,
    }

    # ------------------------------------------------------------------ to implement

    def index(self, split: str) -> list[Sample]:
        """The samples of a split (the layout's split name), sorted and checked to exist."""
        raise NotImplementedError

    def read_bands(self, sample: Sample, bands: list[str]) -> np.ndarray:
        """The raw ``C×H×W`` values of the named bands of a sample."""
        raise NotImplementedError

    def read_native_label(self, sample: Sample) -> np.ndarray:
        """The native ``H×W`` label values (default: the ``label`` file, first channel if RGB)."""
        lab = read_image(sample.files["label"])
        return lab[..., 0] if lab.ndim == 3 else lab

    def label_source(self, sample: Sample) -> str:
        """How messages name a sample's label (its file)."""
        return str(sample.files.get("label", sample.name))

    # ------------------------------------------------------------------ layout helpers

    @property
    def files(self) -> dict[str, str]:
        """The layout's file patterns with the config's ``data.files`` overrides."""
        return {**self.layout.files, **(self.data.get("files") or {})}

    def pattern_path(self, folder: Path, role: str, **fields: str) -> Path:
        """``folder / pattern(role)`` with its fields filled in."""
        return folder / self.files[role].format(**fields)

    @property
    def band_names(self) -> list[str]:
        """The bands this run uses, in input order."""
        return [self.layout.bands[i].name for i in self.layout.band_indices(self.data["bands"])]

    def require(self, sample: Sample) -> Sample:
        """``sample`` if all its files exist.

        Raises:
            InputError: a missing file, named.
        """
        for role, path in sample.files.items():
            if not path.is_file():
                raise InputError(path, f"{self.layout.name} {role} file of {sample.name!r} not found")
        return sample

    def samples(self, split: str) -> list[Sample]:
        """The samples of a config split name (aliases resolved), cached.

        Raises:
            InputError: an unknown or empty split.
        """
        cache: dict[str, list[Sample]] = self.__dict__.setdefault("_samples", {})
        name = self.layout.split(split)
        if name not in cache:
            found = self.index(name)
            if not found:
                raise InputError(self.data["root"], f"{self.layout.name} split {name!r} has no samples")
            cache[name] = found
        return cache[name]

    def load(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """``(image C×H×W raw, label H×W training classes)``, sizes checked."""
        image = np.asarray(self.read_bands(sample, self.band_names))
        label = self.layout.to_classes(self.read_native_label(sample), self.label_source(sample))
        if label.shape != image.shape[1:]:
            raise InputError(
                self.label_source(sample),
                f"label size {label.shape} does not match image size {image.shape[1:]}",
            )
        return image, label

    # ------------------------------------------------------------------ Task contract

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "in_channels": len(self.band_names),
            "out_channels": self.layout.num_classes,
            "band_names": self.band_names,
            "class_names": list(self.layout.classes),
            "class_colors": [list(c) for c in self.layout.colors],
            "normalization": self.layout.normalization(self.band_names),
            "domain": self.domain,
        }
        if self.data["tile_size"]:
            meta["tile_size"] = int(self.data["tile_size"])
            if self.data["tile_overlap"] is not None:
                meta["tile_overlap"] = int(self.data["tile_overlap"])
        return meta

    def train_labels(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for sample in self.samples(self.data["train_split"]):
            label = self.layout.to_classes(self.read_native_label(sample), self.label_source(sample))
            yield label, label != IGNORE

    def train_dataset(self) -> CheckedCacheDataset:
        keys = ["image", "label"]
        transforms: list[Any] = [
            LoadSampled(self),
            Normalized("image", self.layout.normalization(self.band_names)),
        ]
        if self.data["size"]:
            transforms.append(
                Resized(keys, spatial_size=tuple(self.data["size"]), mode=("bilinear", "nearest"))
            )
        if self.data["patch_size"]:
            p = int(self.data["patch_size"])
            transforms += [
                SpatialPadd(keys, spatial_size=(p, p)),
                RandSpatialCropSamplesd(
                    keys, roi_size=(p, p), num_samples=int(self.data["samples_per_image"]), random_size=False
                ),
            ]
        if self.data["augment"]:
            transforms.append(RandFlipd(keys, prob=0.5, spatial_axis=1))  # left-right, as SegNet
            if self.domain == "aerial":  # seen from above: any orientation
                transforms += [RandFlipd(keys, prob=0.5, spatial_axis=0), RandRotate90d(keys, prob=0.5)]
        items = [{"sample": s, "source": str(next(iter(s.files.values())))} for s in self._train()]
        return self.cached_dataset(items, transforms, source_key="source")

    def _train(self) -> list[Sample]:
        return self.samples(self.data["train_split"])

    def split_cases(self, split: str) -> Iterator[Case]:
        """Whole images of a split with their labels (training classes, :data:`IGNORE` = void)."""
        for sample in self.samples(split):
            image, label = self.load(sample)
            yield Case(sample.name, image, label)

    def val_cases(self) -> Iterator[Case]:
        yield from self.split_cases(self.data["val_split"])

    def predict(self, segmenter: Segmenter, case: Case) -> np.ndarray:
        """Labels at the annotation's size: at ``data.size`` and upsampled, tiled, or as is."""
        return labels_from_proba(self.predict_proba(segmenter, case.image, case.name))

    def predict_proba(self, segmenter: Segmenter, image: np.ndarray, source: str) -> np.ndarray:
        """``K×H×W`` probabilities of a raw ``C×H×W`` image the way this task trained."""
        h, w = image.shape[-2:]
        size = self.data["size"]
        if size and tuple(size) != (h, w):
            x = F.interpolate(
                torch.from_numpy(np.ascontiguousarray(image, np.float32))[None],
                size=tuple(size),
                mode="bilinear",
                align_corners=False,
            )[0].numpy()
            proba = torch.from_numpy(segmenter.predict_proba(x, source=source))[None]
            return F.interpolate(proba, size=(h, w), mode="bilinear", align_corners=False)[0].numpy()
        tile = self.data["tile_size"]
        if tile and max(h, w) > int(tile):
            return segmenter.predict_proba_tiled(image, source=source)
        return segmenter.predict_proba(image, source=source)
