"""The ``aerial`` training task: land-cover segmentation of GeoTIFF/PNG scenes on the shared engine.

Data (:mod:`segnet_domains.geo.dataset`): ``ROOT/images/*.tif`` with
``ROOT/labels/*.tif`` matched by name (SkyScapes-Dense / TLCGIS layout; PNG
tiles too). Validation is ``data.val_root`` (same layout) or the last
``data.val_fraction`` of the pairs.

Training samples are random ``patch_size`` windows, ``samples_per_scene``
per scene and epoch, whose centres are drawn per class with ratios
``∝ frequency^-rare_class_power`` (MONAI ``RandCropByLabelClassesd``), so
rare classes are seen often. Unlabelled pixels (label 255 or label nodata)
and image nodata are the ignore index for the loss and the metrics.
Validation runs whole scenes through the same tiled inference as
``segnet-domains tile`` and reports mIoU, per-class IoU and Dice.

Everything else — model, loss, optimizer, checkpoints, resume, DDP — is the
engine's (:mod:`segnet_domains.training`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
from monai.transforms import (
    ClassesToIndicesd,
    RandCropByLabelClassesd,
    RandFlipd,
    RandRotate90d,
    SpatialPadd,
)

from segnet_domains.errors import InputError
from segnet_domains.geo.dataset import (
    IGNORE_INDEX,
    AerialLayout,
    AerialSample,
    SceneNormalized,
    class_frequencies,
    find_pairs,
    load_sample,
    rare_class_ratios,
)
from segnet_domains.geo.normalize import SceneNormalizer
from segnet_domains.inference import Segmenter, labels_from_proba
from segnet_domains.tiling import DEFAULT_TILE, default_overlap
from segnet_domains.training.data import CheckedCacheDataset, check_labels
from segnet_domains.training.task import Case, Task


class AerialTask(Task):
    """Aerial/satellite land cover (``task: aerial``)."""

    name: ClassVar[str] = "aerial"
    include_background: ClassVar[bool] = True  # every land-cover class counts
    best_metric: ClassVar[str] = "miou"
    ignore_index: ClassVar[int | None] = IGNORE_INDEX
    data_defaults: ClassVar[dict[str, Any]] = {
        "images": "images",
        "labels": "labels",
        "val_root": None,
        "val_fraction": 0.2,
        "class_names": None,
        "class_colors": None,
        "bands": None,
        "normalization": {"mode": "percentile", "lower": 1.0, "upper": 99.0},
        "patch_size": 256,
        "samples_per_scene": 8,
        "rare_class_power": 1.0,
        "augment": True,
        "cache_rate": 1.0,
        "tile_size": DEFAULT_TILE,
        "tile_overlap": None,
    }

    # ------------------------------------------------------------------ data

    def _layout(self) -> AerialLayout:
        return AerialLayout(images=str(self.data["images"]), labels=str(self.data["labels"]))

    def _split(self) -> tuple[list[Any], list[Any]]:
        if not hasattr(self, "_pairs_cache"):
            root = self.data["root"]
            if root is None:
                raise InputError(None, "no data root (give --data-root or data.root)")
            pairs = find_pairs(root, self._layout())
            if self.data["val_root"]:
                val = find_pairs(self.data["val_root"], self._layout(), require_labels=False)
                train = pairs
            else:
                n_val = min(len(pairs) - 1, math.ceil(len(pairs) * float(self.data["val_fraction"])))
                train, val = pairs[: len(pairs) - n_val], pairs[len(pairs) - n_val :]
            self._pairs_cache = (train, val)
        return self._pairs_cache

    def _load(self, pair: Any) -> AerialSample:
        sample = load_sample(pair, self.data["bands"], IGNORE_INDEX)
        if sample.label is not None:
            check_labels(sample.label, self.num_classes, str(pair.label), IGNORE_INDEX)
        return sample

    def _train_samples(self) -> list[AerialSample]:
        if not hasattr(self, "_train_cache"):
            self._train_cache = [self._load(p) for p in self._split()[0]]
        return self._train_cache

    @property
    def num_classes(self) -> int:
        names = self.data["class_names"]
        if names:
            return len(names)
        if not hasattr(self, "_k"):  # from the labels: the largest class index + 1
            top = 0
            for pair in self._split()[0]:
                lab = load_sample(pair, self.data["bands"], IGNORE_INDEX).label
                assert lab is not None
                v = lab[lab != IGNORE_INDEX]
                top = max(top, int(v.max()) if v.size else 0)
            self._k = max(2, top + 1)
        return self._k

    def metadata(self) -> dict[str, Any]:
        k = self.num_classes
        first = self._train_samples()[0]
        names = self.data["class_names"] or ["background"] + [f"class_{i}" for i in range(1, k)]
        tile = int(self.data["tile_size"])
        meta: dict[str, Any] = {
            "in_channels": first.image.shape[0],
            "out_channels": k,
            "class_names": list(names),
            "normalization": dict(self.data["normalization"]),
            "domain": "aerial",
            "band_names": first.band_names,
            "tile_size": tile,
            "tile_overlap": self.data["tile_overlap"]
            if self.data["tile_overlap"] is not None
            else default_overlap(tile),
        }
        if self.data["class_colors"]:
            meta["class_colors"] = self.data["class_colors"]
        return meta

    def train_labels(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for s in self._train_samples():
            assert s.label is not None
            yield s.label, s.label != IGNORE_INDEX

    def train_dataset(self) -> CheckedCacheDataset:
        k, p = self.num_classes, int(self.data["patch_size"])
        samples = self._train_samples()
        ratios = rare_class_ratios(
            class_frequencies([s.label for s in samples], k), float(self.data["rare_class_power"])
        )
        items = [
            {
                "image": s.image,
                "label": s.label[None],  # type: ignore[index]
                "mask": (s.label != IGNORE_INDEX)[None].astype(np.float32),  # type: ignore[operator]
                "source": str(s.source),
            }
            for s in samples
        ]
        keys = ["image", "label", "mask"]
        transforms: list[Any] = [
            SceneNormalized("image", self.data["normalization"], valid_key="mask"),
            SpatialPadd(keys, spatial_size=(p, p)),
            ClassesToIndicesd("label", indices_postfix="_cls_indices", num_classes=k),
            RandCropByLabelClassesd(
                keys,
                label_key="label",
                spatial_size=(p, p),
                ratios=ratios,
                num_classes=k,
                num_samples=int(self.data["samples_per_scene"]),
                indices_key="label_cls_indices",
                warn=False,
            ),
        ]
        if self.data["augment"]:
            transforms += [
                RandFlipd(keys, prob=0.5, spatial_axis=1),
                RandFlipd(keys, prob=0.5, spatial_axis=0),
                RandRotate90d(keys, prob=0.5, max_k=3),
            ]
        return self.cached_dataset(items, transforms, source_key="source")

    def val_cases(self) -> Iterator[Case]:
        for pair in self._split()[1]:
            s = self._load(pair)
            yield Case(s.name, s.image, s.label, mask=s.valid)

    # ------------------------------------------------------------------ inference

    def predict(self, segmenter: Segmenter, case: Case) -> np.ndarray:
        """Whole-scene labels the way ``segnet-domains tile`` computes them (scene statistics, tiles)."""
        valid = case.mask if case.mask is not None else np.ones(case.image.shape[-2:], bool)
        x = SceneNormalizer(segmenter.info.normalization, case.image, valid)(case.image)
        x[:, ~valid] = 0.0
        raw = copy.copy(segmenter)  # same weights, input already normalised
        raw.info = dataclasses.replace(segmenter.info, normalization={"mode": "none"})
        return labels_from_proba(raw.predict_proba_tiled(x, source=case.name))
