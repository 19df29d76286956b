"""ATLAS R1.2 stroke lesions, ``standard_MNI`` release (``task: atlas_r12``).

Layout (Liew et al., Sci. Data 2018, https://doi.org/10.1038/sdata.2018.11;
R1.2 on ICPSR/NITRC, as read by public code: ``c00xxs00xxt01_t1w_stx.nii.gz``
beside one or more ``c00xxs00xxt01_LesionSmooth[_N]_stx.nii.gz``)::

    ROOT/standard_MNI/c0001/c0001s0004t01/c0001s0004t01_t1w_stx.nii.gz              197×233×189, 1 mm MNI
    ROOT/standard_MNI/c0001/c0001s0004t01/c0001s0004t01_LesionSmooth_stx.nii.gz     lesion mask
    ROOT/standard_MNI/c0001/c0001s0004t01/c0001s0004t01_LesionSmooth_1_stx.nii.gz   (further lesions)

The lesion masks of a subject are united (any value > 0). The protocol is
X-Net's (Qi et al., MICCAI 2019): T1w in MNI space, axial slices centre-cropped
to 224×192 (``data.crop``: ``[x, y]`` = 192 columns × 224 rows in RAS), and a
5-fold patient-level cross-validation (``data.folds``, ``data.fold``: a fixed
seeded permutation of the sorted subjects, cut into ``folds`` parts; part
``fold`` validates). R1.1's ``*_t1w_deface_stx`` names are read too.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from monai.transforms import CenterSpatialCropd, MapTransform

from segnet_domains.errors import InputError
from segnet_domains.medical.atlas import AtlasLesionTask, AtlasSubject, check_pair
from segnet_domains.medical.nifti import read_volume

#: A subject's folder in the release (``site`` ``c0001``, ``id`` ``c0001s0004t01``) and its file names.
SUBJECT_FOLDER = "standard_MNI/{site}/{id}"
T1W_NAME = "{id}_t1w_stx.nii.gz"
#: ``{n}`` is empty for the first lesion mask, ``_1``, ``_2`` … for further ones.
MASK_NAME = "{id}_LesionSmooth{n}_stx.nii.gz"
T1W_GLOBS = (T1W_NAME.format(id="*"), "*_t1w_deface_stx.nii.gz", "*_t1w_stx.nii", "*_t1w_deface_stx.nii")
MASK_GLOB = "{id}_LesionSmooth*stx.nii*"


@dataclass
class AtlasR12Subject(AtlasSubject):
    """An R1.2 subject: its T1w and every lesion mask (``mask`` is the first)."""

    masks: list[Path] = field(default_factory=list)


def r12_id(t1w: Path) -> str:
    """``c0001s0004t01`` from ``c0001s0004t01_t1w_stx.nii.gz``."""
    return t1w.name.split("_t1w")[0]


def find_r12_subjects(root: str | Path) -> list[AtlasR12Subject]:
    """Walk ``root`` (the release folder or its ``standard_MNI``) for T1w volumes and their masks.

    Raises:
        InputError: ``root`` missing or holding no T1w volume.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "ATLAS R1.2 folder not found")
    images = sorted({p for g in T1W_GLOBS for p in root.rglob(g)})
    if not images:
        raise InputError(root, "no ATLAS R1.2 T1w volumes found (expected standard_MNI/…/*_t1w_stx.nii.gz)")
    subjects = []
    for img in images:
        masks = sorted(img.parent.glob(MASK_GLOB.format(id=r12_id(img))))
        subjects.append(AtlasR12Subject(r12_id(img), img, masks[0] if masks else None, masks))
    return subjects


def kfold(subjects: list[Any], folds: int, fold: int, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """Patient-level ``(train, val)`` of fold ``fold`` of ``folds`` (seeded permutation, near-equal parts).

    Raises:
        InputError: ``fold`` outside ``0..folds-1`` or fewer subjects than folds.
    """
    if not 0 <= fold < folds:
        raise InputError("data.fold", f"must be in 0..{folds - 1}, not {fold}")
    if len(subjects) < folds:
        raise InputError(
            "data.folds", f"{folds} folds need at least {folds} labelled subjects, got {len(subjects)}"
        )
    order = np.random.default_rng(seed).permutation(len(subjects))
    parts = np.array_split(order, folds)
    val_idx = set(parts[fold].tolist())
    train = [s for i, s in enumerate(subjects) if i not in val_idx]
    return train, [subjects[i] for i in sorted(val_idx)]


class UnionMasksd(MapTransform):
    """Stacked lesion masks (``N×…``) → one ``1×…`` mask: 1 where any is > 0."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            union = (torch.as_tensor(x) > 0).any(dim=0, keepdim=True).to(torch.uint8)
            d[key] = type(x)(union, meta=x.meta) if hasattr(x, "meta") else union
        return d


class AtlasR12Task(AtlasLesionTask):
    """Stroke-lesion segmentation on ATLAS R1.2 ``standard_MNI`` (X-Net's protocol)."""

    name: ClassVar[str] = "atlas_r12"
    data_defaults: ClassVar[dict[str, Any]] = {
        **AtlasLesionTask.data_defaults,
        "folds": 5,
        "fold": 0,
        "split_seed": 0,
        "crop": [192, 224],
    }

    def find_subjects(self) -> list[AtlasSubject]:
        return list(find_r12_subjects(self.data["root"]))

    def check_subject(self, subject: AtlasSubject) -> None:
        for mask in getattr(subject, "masks", [subject.mask]):
            check_pair(AtlasSubject(subject.name, subject.image, mask))

    def split_subjects(self, labelled: list[AtlasSubject]) -> tuple[list[AtlasSubject], list[AtlasSubject]]:
        return kfold(labelled, int(self.data["folds"]), int(self.data["fold"]), int(self.data["split_seed"]))

    def ras_label(self, subject: AtlasSubject) -> np.ndarray:
        union = None
        for path in getattr(subject, "masks", [subject.mask]):
            ras = read_volume(path).to_ras() > 0
            union = ras if union is None else union | ras
        assert union is not None
        return union.astype(np.uint8)

    def load_transforms(self, keys: list[str]) -> list[Any]:
        load, orient, *rest = super().load_transforms(keys)
        crop = [int(v) for v in self.data["crop"]] if self.data["crop"] else None
        return [
            load,
            orient,
            UnionMasksd("label"),
            *([CenterSpatialCropd(keys, roi_size=(*crop, -1))] if crop else []),
            *rest,
        ]

    def train_items(self) -> list[dict[str, Any]]:
        return [
            {"image": str(s.image), "label": [str(m) for m in getattr(s, "masks", [s.mask])]}
            for s in self.subjects()[0]
        ]
