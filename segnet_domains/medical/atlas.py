"""ATLAS R2.0 stroke lesions (BIDS layout): subject index and the ``atlas_lesion`` training task.

Layout (Liew et al., Sci. Data 2022, https://doi.org/10.1038/s41597-022-01401-7)::

    ROOT/…/R001/sub-r001s001/ses-1/anat/
        sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz                         197×233×189, 1 mm
        sub-r001s001_ses-1_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz  0/1 lesion mask

Pairs are found by walking the tree for ``*_T1w.nii(.gz)``; a T1w without its
mask is reported and used for inference only (predicted during validation,
not scored). Training samples are 2D slices (or 2.5D slabs with ``context``
neighbours) cut from RAS-oriented volumes by MONAI's
``RandCropByPosNegLabeld`` so lesion slices are not drowned by empty ones;
validation segments whole volumes through the volume-slice adapter.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import nibabel as nib
import numpy as np
from monai.transforms import (
    EnsureTyped,
    LoadImaged,
    Orientationd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandRotated,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

from segnet_domains.errors import InputError
from segnet_domains.medical.nifti import read_volume
from segnet_domains.training.data import CheckedCacheDataset, CheckLabelsd, check_labels
from segnet_domains.training.task import Case, Task
from segnet_domains.training.transforms import Normalized, ToSlice2Dd

T1W_SUFFIXES = ("_T1w.nii.gz", "_T1w.nii")
MASK_SUFFIX = "_label-L_desc-T1lesion_mask"
#: BIDS ``space`` entity of every R2.0 file (MNI152NLin2009aSym, 1 mm).
SPACE = "space-MNI152NLin2009aSym"
#: A subject's folder in the R2.0 release (``site`` ``R001``, ``subject`` ``sub-r001s001``), relative to ROOT.
ANAT_FOLDER = "ATLAS_2/Training/{site}/{subject}/ses-1/anat"
#: A subject's T1w file name in :data:`ANAT_FOLDER`; its mask's name is :func:`mask_path_for`'s.
T1W_NAME = "{subject}_ses-1_" + SPACE + T1W_SUFFIXES[0]
NORMALIZATION = {"mode": "percentile", "lower": 0.5, "upper": 99.5}


@dataclass
class AtlasSubject:
    """One T1w volume and its lesion mask (``None``: inference only)."""

    name: str
    image: Path
    mask: Path | None


def t1w_path(root: str | Path, site: str, subject: str) -> Path:
    """Where the R2.0 release keeps a subject's T1w volume under ``root`` (the layout, writer's side)."""
    return Path(root) / ANAT_FOLDER.format(site=site, subject=subject) / T1W_NAME.format(subject=subject)


def mask_path_for(image: Path) -> Path:
    """The ATLAS lesion-mask name that belongs to a T1w file."""
    for suffix in T1W_SUFFIXES:
        if image.name.endswith(suffix):
            ext = suffix[len("_T1w") :]
            return image.with_name(image.name[: -len(suffix)] + MASK_SUFFIX + ext)
    raise ValueError(f"{image} is not an ATLAS T1w file")


def subject_id(image: Path) -> str:
    """``sub-r001s001`` from a BIDS file name (the whole stem if there is no ``sub-`` entity)."""
    first = image.name.split("_")[0]
    return first if first.startswith("sub-") else image.name.split(".")[0]


def find_subjects(root: str | Path) -> list[AtlasSubject]:
    """Walk ``root`` for T1w volumes and pair each with its lesion mask.

    Raises:
        InputError: ``root`` missing or holding no T1w volume.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "ATLAS data folder not found")
    images = sorted(p for p in root.rglob("*_T1w.nii*") if p.name.endswith(T1W_SUFFIXES))
    if not images:
        raise InputError(root, "no ATLAS T1w volumes found (expected sub-*_T1w.nii.gz in a BIDS tree)")
    subjects = []
    for img in images:
        mask = mask_path_for(img)
        subjects.append(AtlasSubject(subject_id(img), img, mask if mask.is_file() else None))
    return subjects


def check_pair(subject: AtlasSubject) -> None:
    """Compare the headers of a T1w and its mask: same shape and affine.

    Raises:
        InputError: unreadable header, shape or affine mismatch (the mask file named).
    """
    headers = []
    for path in (subject.image, subject.mask):
        try:
            headers.append(nib.load(path))
        except Exception as exc:  # noqa: BLE001 - any reader failure is "cannot be read"
            raise InputError(path, f"not a readable NIfTI volume ({type(exc).__name__}: {exc})") from None
    img, msk = headers
    if img.shape[:3] != msk.shape[:3]:
        raise InputError(
            subject.mask, f"mask shape {msk.shape[:3]} does not match image shape {img.shape[:3]}"
        )
    if not np.allclose(img.affine, msk.affine, atol=1e-3):
        img_axes, msk_axes = "".join(nib.aff2axcodes(img.affine)), "".join(nib.aff2axcodes(msk.affine))
        raise InputError(
            subject.mask,
            f"mask affine differs from the image's (voxel grids not aligned; axes {msk_axes} vs {img_axes})",
        )


def split_subjects(subjects: list[AtlasSubject], val_fraction: float) -> tuple[list, list]:
    """Deterministic split of the labelled subjects: the last ``val_fraction`` (≥ 1 when ≥ 2) validate."""
    n = len(subjects)
    n_val = 0 if n < 2 or val_fraction <= 0 else min(n - 1, max(1, round(n * val_fraction)))
    return subjects[: n - n_val], subjects[n - n_val :]


class AtlasLesionTask(Task):
    """Stroke-lesion segmentation on ATLAS R2.0 T1w volumes (``task: atlas_lesion``)."""

    name: ClassVar[str] = "atlas_lesion"
    data_defaults: ClassVar[dict[str, Any]] = {
        "val_fraction": 0.2,
        "slice_axis": 2,
        "context": 0,
        "samples_per_volume": 8,
        "pos_fraction": 0.5,
        "cache_rate": 1.0,
        "augment": True,
    }

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._subjects: tuple[list[AtlasSubject], list[AtlasSubject], list[AtlasSubject]] | None = None

    @property
    def context(self) -> int:
        return int(self.data["context"])

    def metadata(self) -> dict[str, Any]:
        return {
            "in_channels": 2 * self.context + 1,
            "out_channels": 2,
            "band_names": ["T1w"],
            "class_names": ["background", "lesion"],
            "class_colors": [[0, 0, 0], [255, 40, 40]],
            "normalization": NORMALIZATION,
            "domain": "mri",
            "slice_axis": int(self.data["slice_axis"]),
            "context": self.context,
        }

    # ------------------------------------------------------------------ index

    def subjects(self) -> tuple[list[AtlasSubject], list[AtlasSubject], list[AtlasSubject]]:
        """``(train, val, inference_only)`` subjects, pairs checked."""
        if self._subjects is None:
            labelled, unlabeled = [], []
            for s in self.find_subjects():
                if s.mask is None:
                    unlabeled.append(s)
                    continue
                try:
                    self.check_subject(s)
                except InputError as exc:
                    if not self.data["skip_corrupt"]:
                        raise
                    warnings.warn(f"{exc} — skipped (data.skip_corrupt is true)", stacklevel=2)
                    continue
                labelled.append(s)
            if unlabeled:
                names = ", ".join(s.image.name for s in unlabeled[:5])
                warnings.warn(
                    f"{len(unlabeled)} volume(s) without a lesion mask, used for inference only: {names}",
                    stacklevel=2,
                )
            if not labelled:
                raise InputError(self.data["root"], "no T1w volume with a lesion mask to train on")
            train, val = self.split_subjects(labelled)
            self._subjects = (train, val, unlabeled)
        return self._subjects

    def find_subjects(self) -> list[AtlasSubject]:
        """Every T1w volume under ``data.root`` with its mask (R2.0 BIDS names)."""
        return find_subjects(self.data["root"])

    def check_subject(self, subject: AtlasSubject) -> None:
        """Refuse a subject whose mask does not fit its T1w (:func:`check_pair`)."""
        check_pair(subject)

    def split_subjects(self, labelled: list[AtlasSubject]) -> tuple[list[AtlasSubject], list[AtlasSubject]]:
        """``(train, val)`` of the labelled subjects: the last ``data.val_fraction`` validate."""
        return split_subjects(labelled, float(self.data["val_fraction"]))

    def ras_label(self, subject: AtlasSubject) -> np.ndarray:
        """A subject's 0/1 lesion mask in RAS order (values checked)."""
        assert subject.mask is not None
        mask = read_volume(subject.mask)
        check_labels(mask.data, 2, str(subject.mask))
        return mask.to_ras().astype(np.uint8)

    def load_transforms(self, keys: list[str]) -> list[Any]:
        """The deterministic (cached) part of training: read, orient to RAS, check labels, normalise."""
        return [
            LoadImaged(keys, reader="NibabelReader", ensure_channel_first=True, image_only=True),
            Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            CheckLabelsd("label", num_classes=2),
            EnsureTyped("label", dtype=np.int64),
            Normalized("image", NORMALIZATION),
        ]

    def train_items(self) -> list[dict[str, Any]]:
        """``{"image": T1w path, "label": mask path}`` of the training subjects."""
        return [{"image": str(s.image), "label": str(s.mask)} for s in self.subjects()[0]]

    # ------------------------------------------------------------------ training

    def train_labels(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for s in self.subjects()[0]:
            yield self.ras_label(s), None

    def train_dataset(self) -> CheckedCacheDataset:
        axis, k = int(self.data["slice_axis"]) % 3, self.context
        size = [-1, -1, -1]
        size[axis] = 2 * k + 1
        keys = ["image", "label"]
        transforms: list[Any] = [
            *self.load_transforms(keys),
            RandCropByPosNegLabeld(
                keys,
                label_key="label",
                spatial_size=size,
                pos=float(self.data["pos_fraction"]),
                neg=1.0 - float(self.data["pos_fraction"]),
                num_samples=int(self.data["samples_per_volume"]),
            ),
            ToSlice2Dd("image", "label", axis=axis),
        ]
        if self.data["augment"]:
            transforms += [
                RandFlipd(keys, prob=0.5, spatial_axis=0),
                RandRotated(keys, range_x=0.2, prob=0.3, mode=("bilinear", "nearest"), padding_mode="zeros"),
                RandScaleIntensityd("image", factors=0.1, prob=0.5),
                RandShiftIntensityd("image", offsets=0.05, prob=0.5),
                RandGaussianNoised("image", prob=0.2, std=0.02),
            ]
        return self.cached_dataset(self.train_items(), transforms)

    # ------------------------------------------------------------------ validation

    def val_cases(self) -> Iterator[Case]:
        _, val, unlabeled = self.subjects()
        for s in [*val, *unlabeled]:
            volume = read_volume(s.image)
            label = None if s.mask is None else self.ras_label(s)
            yield Case(s.name, volume.to_ras(), label, volume=True)
