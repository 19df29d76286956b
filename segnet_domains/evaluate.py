"""Score predicted label files against ground truth: ``segnet-domains evaluate``.

Files or folders; folders are matched by name (the file name without its
image/NIfTI suffixes; failing that, the BIDS ``sub-…`` subject). NIfTI masks
(``.nii``/``.nii.gz``) and 2D label images (PNG, TIFF, GIF) are read; a
binary ``0/255`` image counts as ``0/1``. Pairs must have the same shape and,
for NIfTI, the same affine. An optional valid mask (file or folder, e.g.
RITE's ``NN_test_mask.gif`` fields of view, matched by name with or without
a ``_mask`` suffix) restricts every count to its non-zero pixels.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segnet_domains.errors import InputError
from segnet_domains.io.images import read_image
from segnet_domains.io.safety import file_kind
from segnet_domains.medical.nifti import is_nifti, read_volume
from segnet_domains.metrics import evaluate_case, summarize

LABEL_SUFFIXES = (".nii.gz", ".nii", ".png", ".tif", ".tiff", ".gif")


@dataclass
class LabelFile:
    """Labels read from a file, with the affine of a NIfTI (``None`` for 2D images)."""

    path: Path
    labels: np.ndarray
    affine: np.ndarray | None


def case_name(path: Path) -> str:
    """File name without its label-file suffix (``a.nii.gz`` → ``a``)."""
    name = path.name
    for suffix in LABEL_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _subject(name: str) -> str | None:
    m = re.match(r"(sub-[A-Za-z0-9]+)", name)
    return m.group(1) if m else None


def _label_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(LABEL_SUFFIXES))


def match_pairs(pred: str | Path, truth: str | Path) -> list[tuple[str, Path, Path]]:
    """``(case name, prediction, truth)`` pairs from two files or two folders.

    Raises:
        InputError: a missing path, a file paired with a folder, an empty
            folder, or no prediction matching any truth.
    """
    pred, truth = Path(pred), Path(truth)
    for p in (pred, truth):
        kind = file_kind(p)
        if kind is not None and not kind.startswith("is a folder"):
            raise InputError(p, kind)
    if pred.is_file() and truth.is_file():
        return [(case_name(truth), pred, truth)]
    if pred.is_file() != truth.is_file():
        raise InputError(pred, "--pred and --truth must both be files or both be folders")
    preds, truths = _label_files(pred), _label_files(truth)
    if not truths:
        raise InputError(truth, "no label files (.nii.gz, .png, .tif …) in the folder")
    if not preds:
        raise InputError(pred, "no label files (.nii.gz, .png, .tif …) in the folder")
    by_name = {case_name(p): p for p in preds}
    by_subject: dict[str, list[Path]] = {}
    for p in preds:
        sub = _subject(case_name(p))
        if sub:
            by_subject.setdefault(sub, []).append(p)
    pairs, missing = [], []
    for t in truths:
        name = case_name(t)
        match = by_name.get(name)
        sub = _subject(name)
        if match is None and sub and len(by_subject.get(sub, [])) == 1:
            match = by_subject[sub][0]
        if match is None:
            missing.append(t.name)
        else:
            pairs.append((name, match, t))
    if not pairs:
        raise InputError(pred, f"no prediction matches a truth file by name (e.g. {truths[0].name})")
    if missing:
        warnings.warn(
            f"{len(missing)} truth file(s) without a prediction: {', '.join(missing[:5])}", stacklevel=2
        )
    return pairs


def read_labels(path: Path) -> LabelFile:
    """Read a label file as integer classes.

    Raises:
        InputError: unreadable, not integer-valued, or a colour image.
    """
    if is_nifti(path):
        vol = read_volume(path)
        data, affine = vol.data, vol.affine
    else:
        data, affine = read_image(path), None
        if data.ndim == 3:
            if not all(np.array_equal(data[..., 0], data[..., c]) for c in range(1, data.shape[-1])):
                raise InputError(
                    path, "a colour image is not a label image (expected one class index per pixel)"
                )
            data = data[..., 0]
    if np.issubdtype(data.dtype, np.floating) and not np.array_equal(data, np.round(data)):
        raise InputError(path, "labels are not integers")
    labels = np.asarray(data).astype(np.int64)
    if labels.min(initial=0) < 0:
        raise InputError(path, "labels are negative")
    values = np.unique(labels)
    if values.size <= 2 and values.max(initial=0) == 255:  # a 0/255 binary mask
        labels = (labels > 0).astype(np.int64)
    return LabelFile(path, labels, affine)


def find_valid_mask(masks: Path, name: str) -> Path:
    """The valid-mask file for case ``name``: ``masks`` itself, or ``masks/<name>[_mask].<ext>``.

    Raises:
        InputError: no matching file in the folder.
    """
    if masks.is_file():
        return masks
    for p in _label_files(masks):
        if case_name(p) in (name, f"{name}_mask"):
            return p
    raise InputError(masks, f"no valid mask for case {name!r} (expected {name}.* or {name}_mask.*)")


def evaluate_paths(
    pred: str | Path,
    truth: str | Path,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    include_background: bool = False,
    valid_masks: str | Path | None = None,
) -> dict[str, Any]:
    """Dice, Jaccard, precision and recall per case and their mean.

    Args:
        pred: predicted label file or folder.
        truth: ground-truth file or folder.
        num_classes: K (default: the largest label seen + 1, at least 2).
        class_names: names for the per-class report.
        include_background: average over all classes (default: foreground).
        valid_masks: file or folder of masks; only their non-zero pixels count.

    Returns:
        :func:`~segnet_domains.metrics.summarize`'s report.

    Raises:
        InputError: unmatched names, shape/affine mismatch, bad label files.
    """
    loaded = []
    for name, p, t in match_pairs(pred, truth):
        lp, lt = read_labels(p), read_labels(t)
        if lp.labels.shape != lt.labels.shape:
            raise InputError(
                p, f"prediction shape {lp.labels.shape} differs from truth {t.name} {lt.labels.shape}"
            )
        if (
            lp.affine is not None
            and lt.affine is not None
            and not np.allclose(lp.affine, lt.affine, atol=1e-3)
        ):
            raise InputError(p, f"prediction affine differs from truth {t.name} (voxel grids not aligned)")
        valid = None
        if valid_masks is not None:
            vm = read_labels(find_valid_mask(Path(valid_masks), name))
            if vm.labels.shape != lt.labels.shape:
                raise InputError(
                    vm.path, f"mask shape {vm.labels.shape} differs from truth {lt.labels.shape}"
                )
            valid = vm.labels > 0
        loaded.append((name, lp.labels, lt.labels, valid))
    k = num_classes or max(2, 1 + max(int(max(a.max(initial=0), b.max(initial=0))) for _, a, b, _ in loaded))
    for name, a, b, _ in loaded:
        if max(a.max(initial=0), b.max(initial=0)) >= k:
            raise InputError(name, f"labels outside the declared classes 0..{k - 1}")
    cases = [evaluate_case(a, b, k, mask=v, name=name) for name, a, b, v in loaded]
    names = class_names or (["background"] + [f"class_{i}" for i in range(1, k)])
    return summarize(cases, names, include_background=include_background)


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table: one line per case, then the mean."""
    cols = ("dice", "jaccard", "precision", "recall")
    width = max([len(c["name"]) for c in report["cases"]] + [4])

    def fmt(v: float | None) -> str:
        return f"{v:9.4f}" if v is not None else f"{'n/a':>9}"

    lines = [f"{'case':<{width}}  " + " ".join(f"{c:>9}" for c in cols)]
    for c in report["cases"]:
        lines.append(f"{c['name']:<{width}}  " + " ".join(fmt(c[k]) for k in cols))
    lines.append(f"{'mean':<{width}}  " + " ".join(fmt(report["mean"][k]) for k in cols))
    return "\n".join(lines)
