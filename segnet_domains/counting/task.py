"""UCF-QNRF crowd counting (``task: ucf_qnrf``) for the shared training engine.

Layout under ``--data-root`` (as distributed, ``UCF-QNRF_ECCV18``)::

    Train/img_0001.jpg  Train/img_0001_ann.mat   ...   (1201 images)
    Test/img_0001.jpg   Test/img_0001_ann.mat    ...   (334 images)

``*_ann.mat`` is MATLAB v5 with ``annPoints`` (``N×2``, ``x, y``, 1-based).
The model is a SegNet with a one-channel density head
(``model.head: density``); targets are Gaussian density maps of the heads
(:mod:`segnet_domains.counting.density`) scaled by ``data.density_scale``
(recorded in the checkpoint; inference divides by it). Training samples are
random ``patch_size`` windows whose density is drawn from the whole image's
kernels, so a head cut by the window keeps only its share; the loss is the
pixel-wise MSE on the scaled density. Validation counts every test image
whole (tiled above ``tile_size``) through the shared Segmenter and reports
MAE, MSE and RMSE (the counting papers' "MSE"); ``best.pt`` has the lowest MAE.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import MapTransform, RandFlipd, Randomizable
from torch import nn

from segnet_domains.adapters import Normalizer
from segnet_domains.counting.annotations import read_head_points
from segnet_domains.counting.density import density_map, kernel_sigmas
from segnet_domains.errors import InputError
from segnet_domains.inference import Segmenter
from segnet_domains.io.images import read_image
from segnet_domains.metrics import _json_ready, count_errors
from segnet_domains.training.data import CheckedCacheDataset
from segnet_domains.training.task import Task

#: ImageNet statistics on 0-255 pixels, per channel and fixed (tiles and crops see the same numbers).
NORMALIZATION = {"mode": "zscore", "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}

#: UCF-QNRF's names inside a split folder: ``img_0001.jpg`` with ``img_0001_ann.mat`` beside it.
IMAGE_NAME = "img_{number:04d}.jpg"
ANNOTATION_NAME = "{stem}_ann.mat"


@dataclass
class CrowdSample:
    """One image and its annotation file."""

    name: str
    image: Path
    annotation: Path


def find_samples(root: str | Path, split: str) -> list[CrowdSample]:
    """``img_NNNN.jpg`` + ``img_NNNN_ann.mat`` pairs of ``ROOT/split``.

    Raises:
        InputError: a missing split folder, no images, an image without its ``_ann.mat``.
    """
    folder = Path(root) / split
    if not folder.is_dir():
        raise InputError(folder, "split folder not found (UCF-QNRF has Train/ and Test/)")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        raise InputError(folder, "no images (img_NNNN.jpg)")
    samples = []
    for img in images:
        ann = img.with_name(ANNOTATION_NAME.format(stem=img.stem))
        if not ann.is_file():
            raise InputError(img, f"no annotation {ann.name} beside it")
        samples.append(CrowdSample(img.stem, img, ann))
    return samples


def _rgb(path: Path) -> np.ndarray:
    """``3×H×W`` uint8 (grey images repeated to three channels, as UCF-QNRF has a few)."""
    img = read_image(path)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise InputError(path, f"expected an RGB or grey image, got shape {img.shape}")
    return np.ascontiguousarray(np.moveaxis(img, -1, 0))


class LoadCrowdd(MapTransform):
    """``{"image": path, "points": path}`` → image ``3×H×W`` uint8, head points and their kernel widths.

    Deterministic, so :class:`~monai.data.CacheDataset` caches its output.
    """

    def __init__(self, kernel: dict[str, Any]) -> None:
        super().__init__(["image", "points"])
        self.kernel = kernel

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d["image"] = _rgb(Path(d["image"]))
        points = read_head_points(d["points"])
        d["points"] = points
        d["sigmas"] = kernel_sigmas(points, **self.kernel)
        return d


class RandCrowdCropd(Randomizable, MapTransform):
    """Random ``patch×patch`` windows with their density: ``num_samples`` dicts per image.

    The image window is normalised (the checkpoint's spec) and zero-padded
    when the image is smaller than the patch; ``"label"`` is ``1×p×p`` float32,
    the window of the whole image's density map times ``scale``.
    """

    def __init__(self, patch: int, num_samples: int, scale: float, normalization: dict[str, Any]) -> None:
        MapTransform.__init__(self, ["image"])
        self.patch, self.num_samples, self.scale = int(patch), int(num_samples), float(scale)
        self.normalize = Normalizer(normalization)
        self._starts: list[tuple[int, int]] = []

    def randomize(self, shape: tuple[int, int]) -> None:
        h, w = shape
        self._starts = [
            (
                int(self.R.randint(0, max(h - self.patch, 0) + 1)),
                int(self.R.randint(0, max(w - self.patch, 0) + 1)),
            )
            for _ in range(self.num_samples)
        ]

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        image = np.asarray(data["image"])
        _, h, w = image.shape
        self.randomize((h, w))
        p = self.patch
        out = []
        for top, left in self._starts:
            wh, ww = min(p, h - top), min(p, w - left)
            img = np.zeros((image.shape[0], p, p), np.float32)
            img[:, :wh, :ww] = self.normalize(image[:, top : top + wh, left : left + ww])
            dens = np.zeros((1, p, p), np.float32)
            dens[0, :wh, :ww] = density_map(data["points"], (h, w), data["sigmas"], (top, left, wh, ww))
            out.append({"image": torch.from_numpy(img), "label": torch.from_numpy(dens * self.scale)})
        return out


class DensityMSELoss(nn.Module):
    """Pixel-wise mean squared error between predicted and target (scaled) density.

    The engine calls ``loss(output, label, mask)``; ``mask`` (1 = counts) is
    honoured, padding included as zeros (a padded region has zero density).
    """

    def forward(
        self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        target = target.to(output.dtype)
        if mask is None:
            return F.mse_loss(output, target)
        m = mask.to(output.dtype)
        return ((output - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


class UcfQnrfTask(Task):
    """UCF-QNRF counting with a density-head SegNet (``task: ucf_qnrf``, ``model.head: density``)."""

    name: ClassVar[str] = "ucf_qnrf"
    best_metric: ClassVar[str] = "mae"
    best_mode: ClassVar[str] = "min"
    data_defaults: ClassVar[dict[str, Any]] = {
        "train_split": "Train",
        "val_split": "Test",
        "patch_size": 256,
        "samples_per_image": 4,
        "sigma": "adaptive",  # or a fixed width in pixels
        "knn": 3,
        "beta": 0.3,
        "sigma_max": 30.0,
        "density_scale": 100.0,
        "tile_size": 1024,
        "augment": True,
        "cache_rate": 1.0,
    }

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        head = config.get("model", {}).get("head")
        if head != "density":
            raise InputError("model.head", f"task ucf_qnrf needs model.head: density, not {head!r}")
        sigma = self.data["sigma"]
        if sigma != "adaptive" and not (isinstance(sigma, int | float) and sigma > 0):
            raise InputError("data.sigma", f"must be 'adaptive' or a positive width, not {sigma!r}")

    @property
    def _kernel(self) -> dict[str, Any]:
        return {
            "sigma": self.data["sigma"],
            "k": int(self.data["knn"]),
            "beta": float(self.data["beta"]),
            "sigma_max": float(self.data["sigma_max"]),
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "in_channels": 3,
            "out_channels": 1,
            "band_names": ["red", "green", "blue"],
            "class_names": ["density"],
            "normalization": NORMALIZATION,
            "tile_size": int(self.data["tile_size"]),
            "density_scale": float(self.data["density_scale"]),
        }

    def loss(self, num_classes: int, weights: np.ndarray | None) -> nn.Module:
        """MSE on the scaled density (class weights do not apply)."""
        return DensityMSELoss()

    def train_dataset(self) -> CheckedCacheDataset:
        samples = find_samples(self.data["root"], self.data["train_split"])
        items = [{"image": str(s.image), "points": str(s.annotation)} for s in samples]
        transforms: list[Any] = [
            LoadCrowdd(self._kernel),
            RandCrowdCropd(
                int(self.data["patch_size"]),
                int(self.data["samples_per_image"]),
                float(self.data["density_scale"]),
                NORMALIZATION,
            ),
        ]
        if self.data["augment"]:
            transforms.append(RandFlipd(["image", "label"], prob=0.5, spatial_axis=1))
        return self.cached_dataset(items, transforms)

    def val_cases(self) -> Iterator[Any]:
        """Not used: :meth:`evaluate` scores counts (the engine's label scoring does not apply)."""
        return iter(())

    def evaluate(self, segmenter: Segmenter) -> dict[str, Any]:
        """Count every validation image through the Segmenter; MAE, MSE, RMSE over images."""
        rows = []
        for s in find_samples(self.data["root"], self.data["val_split"]):
            try:
                image, true = np.moveaxis(_rgb(s.image), 0, -1), len(read_head_points(s.annotation))
            except InputError as exc:
                if not self.data["skip_corrupt"]:
                    raise
                warnings.warn(f"{exc} — skipped (data.skip_corrupt is true)", stacklevel=2)
                continue
            predicted = segmenter.count(image, source=str(s.image))
            rows.append({"name": s.name, "predicted": predicted, "true": float(true)})
        errors = count_errors([r["predicted"] for r in rows], [r["true"] for r in rows])
        errors.pop("n")
        return _json_ready(
            {
                "cases": rows,
                "mean": errors,
                "pooled": {},
                "per_class_mean": {},
                "miou": None,
                "n_cases": len(rows),
                "inference_only": [],
            }
        )
