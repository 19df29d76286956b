"""Segmentation metrics: Dice, Jaccard (IoU), precision, recall per case and class; mIoU.

Counts come from MONAI's :func:`monai.metrics.get_confusion_matrix` on one-hot
tensors, so the numbers are MONAI's; an ignore mask (pixels outside a retina's
field of view, nodata in a scene) is applied by zeroing both one-hot maps
there, so ignored pixels count as neither true nor false anything.

Undefined ratios (a class absent from both prediction and truth) are ``nan``
and left out of means (``nanmean``), the convention of MONAI's metrics with
``ignore_empty=True``.

Beside those per-case scores, the protocols of published results
(:mod:`segnet_domains.protocols`) need a dataset-level ``K×K``
:func:`confusion_matrix` and what follows from it (:func:`confusion_scores`:
global accuracy, class-average accuracy, IoU per class), SegNet's boundary
F1 score (:func:`bf_score`) and crowd-count errors (:func:`count_errors`).

Typical use::

    case = evaluate_case(pred, truth, num_classes=2, mask=fov, name="01_test")
    report = summarize([case, ...], class_names=["background", "vessel"])
    report["mean"]["dice"]        # mean over cases of the foreground Dice

References: the seed paper reports Dice, Jaccard, precision and recall on
ATLAS and RITE; SegNet (https://arxiv.org/abs/1511.00561) reports class
average accuracy and mIoU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.metrics import get_confusion_matrix
from scipy import ndimage
from scipy.spatial import cKDTree

#: The per-class scores every report carries.
SCORE_NAMES = ("dice", "jaccard", "precision", "recall")


def _one_hot(labels: np.ndarray, num_classes: int, valid: np.ndarray | None) -> torch.Tensor:
    lab = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64, copy=False)).reshape(1, -1)
    oh = torch.zeros((1, num_classes, lab.shape[1]), dtype=torch.uint8)
    oh.scatter_(1, lab[:, None].clamp_(0, num_classes - 1), 1)
    if valid is not None:
        oh *= torch.from_numpy(np.ascontiguousarray(valid).reshape(1, 1, -1).astype(np.uint8))
    return oh


def class_counts(
    pred: np.ndarray, truth: np.ndarray, num_classes: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """Per-class confusion counts of one case.

    Args:
        pred: predicted labels (any shape).
        truth: true labels, same shape.
        num_classes: K; labels must lie in ``0..K-1``.
        mask: optional boolean array, same shape: ``True`` where pixels count.

    Returns:
        ``K×4`` int64 array of ``[tp, fp, tn, fn]`` per class (MONAI's order).

    Raises:
        ValueError: shapes differ or labels out of range.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    for name, arr in (("prediction", pred), ("truth", truth)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}")
    valid = None
    if mask is not None:
        valid = np.asarray(mask).astype(bool)
        if valid.shape != truth.shape:
            raise ValueError(f"mask shape {valid.shape} differs from truth shape {truth.shape}")
    cm = get_confusion_matrix(
        _one_hot(pred, num_classes, valid).float(), _one_hot(truth, num_classes, valid).float()
    )
    counts = cm[0].round().to(torch.int64).numpy()
    if valid is not None:  # ignored pixels were counted as true negatives: take them out
        counts[:, 2] -= int((~valid).sum())
    return counts


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def scores(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Dice, Jaccard, precision and recall per class from ``K×4`` (or summed) counts.

    ``nan`` where the ratio is undefined (0/0).
    """
    tp, fp, _tn, fn = (np.asarray(counts)[..., i] for i in range(4))
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "jaccard": _ratio(tp, tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
    }


def mean_iou(counts: np.ndarray, include_background: bool = True) -> float:
    """Mean intersection-over-union over classes (SegNet's mIoU), ``nan`` classes skipped."""
    iou = scores(counts)["jaccard"]
    return _nanmean(iou if include_background else iou[1:])


def _nanmean(values: np.ndarray | Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan


@dataclass
class CaseScores:
    """Scores of one case (an image or volume).

    Attributes:
        name: case identifier (file stem).
        counts: ``K×4`` ``[tp, fp, tn, fn]`` per class.
        per_class: score name → ``K`` values.
    """

    name: str
    counts: np.ndarray
    per_class: dict[str, np.ndarray] = field(default_factory=dict)

    def mean(self, include_background: bool = False) -> dict[str, float]:
        """Each score averaged over the classes (foreground only by default)."""
        start = 0 if include_background or self.counts.shape[0] == 1 else 1
        return {k: _nanmean(v[start:]) for k, v in self.per_class.items()}


def evaluate_case(
    pred: np.ndarray,
    truth: np.ndarray,
    num_classes: int,
    mask: np.ndarray | None = None,
    name: str = "case",
    ignore_index: int | None = None,
) -> CaseScores:
    """Confusion counts and per-class scores of one case (see :func:`class_counts`).

    ``ignore_index``: truth pixels with this value count nowhere (as if
    outside ``mask``), whatever is predicted there (a nodata value too); it
    may lie outside ``0..num_classes-1`` (CamVid's 11).
    """
    if ignore_index is not None:
        truth = np.asarray(truth)
        keep = truth != ignore_index
        mask = keep if mask is None else (np.asarray(mask).astype(bool) & keep)
        truth = np.where(keep, truth, 0)
        pred = np.where(keep, pred, 0)
    counts = class_counts(pred, truth, num_classes, mask)
    return CaseScores(name=name, counts=counts, per_class=scores(counts))


def summarize(
    cases: Sequence[CaseScores],
    class_names: Sequence[str] | None = None,
    include_background: bool = False,
) -> dict[str, Any]:
    """Per-case and mean report, JSON-ready (``nan`` → ``None``).

    Returns:
        ``{"cases": [{"name", "dice", …, "per_class": {class: {score: v}}}],
        "mean": {score: mean over cases}, "per_class_mean": {class: {score: v}},
        "pooled": {score: v from counts summed over cases}, "miou": pooled mIoU
        over all classes, "n_cases": N}``. Case scores average the foreground
        classes unless ``include_background``.
    """
    if not cases:
        return {"cases": [], "mean": {}, "per_class_mean": {}, "pooled": {}, "miou": None, "n_cases": 0}
    k = cases[0].counts.shape[0]
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(k)]
    rows = []
    for c in cases:
        row: dict[str, Any] = {"name": c.name, **c.mean(include_background)}
        row["per_class"] = {names[i]: {s: float(c.per_class[s][i]) for s in SCORE_NAMES} for i in range(k)}
        rows.append(row)
    mean = {s: _nanmean([r[s] for r in rows]) for s in SCORE_NAMES}
    per_class_mean = {
        names[i]: {s: _nanmean([c.per_class[s][i] for c in cases]) for s in SCORE_NAMES} for i in range(k)
    }
    total = np.sum([c.counts for c in cases], axis=0)
    pooled_scores = scores(total)
    start = 0 if include_background or k == 1 else 1
    pooled = {s: _nanmean(pooled_scores[s][start:]) for s in SCORE_NAMES}
    report = {
        "cases": rows,
        "mean": mean,
        "per_class_mean": per_class_mean,
        "pooled": pooled,
        "miou": mean_iou(total),
        "n_cases": len(cases),
    }
    return _json_ready(report)


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return None if math.isnan(obj) else float(obj)
    return obj


# --------------------------------------------------------------------------- confusion matrices


def confusion_matrix(
    pred: np.ndarray, truth: np.ndarray, num_classes: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """``K×K`` pixel counts of one image (rows: true class, columns: predicted class).

    MONAI's :func:`~monai.metrics.get_confusion_matrix` gives per-class
    ``tp/fp/tn/fn`` of one-hot maps, not the ``K×K`` matrix that the SegNet,
    RTFNet and ADE20K protocols sum over a whole test set, so this is the
    usual ``bincount(K·truth + pred)``: int64, one matrix per image, summed in
    a stream (a test set never has to be in memory at once).

    Args:
        pred: predicted classes ``0..K-1`` (any shape).
        truth: true classes ``0..K-1``, same shape (ignored pixels may hold anything).
        num_classes: K.
        valid: optional boolean array, same shape: only its ``True`` pixels count.

    Raises:
        ValueError: shapes differ or a counted label lies outside ``0..K-1``.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    p, t = pred.ravel(), truth.ravel()
    if valid is not None:
        keep = np.asarray(valid).astype(bool)
        if keep.shape != truth.shape:
            raise ValueError(f"mask shape {keep.shape} differs from truth shape {truth.shape}")
        p, t = p[keep.ravel()], t[keep.ravel()]
    for name, arr in (("prediction", p), ("truth", t)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}")
    flat = t.astype(np.int64) * num_classes + p.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion_scores(cm: np.ndarray) -> dict[str, Any]:
    """Scores from a ``K×K`` confusion matrix (rows true, columns predicted).

    Returns:
        ``global_accuracy`` (correct / counted pixels), ``class_accuracy``
        (``K``: correct / true pixels of the class, i.e. recall),
        ``iou`` (``K``: ``cm[c,c] / (row_c + col_c - cm[c,c])``),
        ``true_pixels`` and ``predicted_pixels`` (``K`` each). Undefined
        ratios (0/0) are ``nan``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    diag, rows, cols = np.diag(cm), cm.sum(1), cm.sum(0)
    total = cm.sum()
    return {
        "global_accuracy": float(diag.sum() / total) if total > 0 else math.nan,
        "class_accuracy": _ratio(diag, rows),
        "iou": _ratio(diag, rows + cols - diag),
        "true_pixels": rows,
        "predicted_pixels": cols,
    }


def class_mean(values: np.ndarray, classes: Sequence[int] | None = None, absent: str = "skip") -> float:
    """Mean of per-class values over ``classes`` (default: all).

    Args:
        values: one value per class, ``nan`` where undefined (a class absent
            from both prediction and truth).
        classes: the class indices that enter the mean.
        absent: ``"skip"`` leaves ``nan`` classes out (MONAI's ``nanmean``);
            ``"zero"`` counts them as 0, as ADE20K's ``intersectionAndUnion``
            does with its ``I / (eps + U)``.
    """
    arr = np.asarray(values, dtype=np.float64)
    if classes is not None:
        arr = arr[list(classes)]
    if absent == "zero":
        return float(np.nan_to_num(arr, nan=0.0).mean()) if arr.size else math.nan
    if absent != "skip":
        raise ValueError(f"absent must be 'skip' or 'zero', not {absent!r}")
    return _nanmean(arr)


# --------------------------------------------------------------------------- boundary F1 (BF)

#: SegNet's BF tolerance: 0.75 % of the image diagonal (Badrinarayanan et al. §4, after Csurka et al. 2013).
BF_TOLERANCE = 0.0075


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-connected (6 in 3D) background neighbour; outside the image is background."""
    cross = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)


def boundary_f1(pred_mask: np.ndarray, true_mask: np.ndarray, tolerance: float) -> tuple[float, float, float]:
    """``(F1, precision, recall)`` of one class's boundary (MATLAB's ``bwbfscore2``).

    Boundaries are the pixels removed by a one-pixel erosion with a cross
    (zero padding, so objects touching the image edge get a boundary there);
    a predicted boundary pixel is matched when a true boundary pixel lies
    closer than ``tolerance`` (strictly, Euclidean, in pixels), and vice versa.
    Precision = matched predicted / predicted boundary pixels, recall =
    matched true / true boundary pixels, F1 their harmonic mean.

    The matching is MATLAB's pairwise test ``(dI² + dJ²) < θ²`` answered by a
    k-d tree over the boundary pixels (scipy's ``cKDTree``), so its cost grows
    with the boundary length, not the image area; the masks are cropped to
    the class's bounding box first. MONAI's ``SurfaceDiceMetric`` is not used:
    the normalised surface Dice pools both boundaries into one ratio instead of
    taking the harmonic mean of precision and recall, a different number.

    Undefined cases: a class absent from both → ``nan``; absent from the
    truth only → ``nan`` (recall 0/0, as MATLAB); present in the truth but
    with no predicted boundary → 0 (MATLAB's formula gives 0/0 there; the
    class was missed entirely, which the SegNet protocol scores as a failure).
    """
    pred_mask, true_mask = np.asarray(pred_mask, bool), np.asarray(true_mask, bool)
    box = _bounding_box(pred_mask | true_mask)
    pb = np.argwhere(_boundary(pred_mask[box])) if box else np.zeros((0, pred_mask.ndim))
    tb = np.argwhere(_boundary(true_mask[box])) if box else np.zeros((0, true_mask.ndim))
    if len(tb) == 0:
        return math.nan, (0.0 if len(pb) else math.nan), math.nan
    if len(pb) == 0:
        return 0.0, math.nan, 0.0
    d_pred, _ = cKDTree(tb).query(pb, distance_upper_bound=tolerance)
    d_true, _ = cKDTree(pb).query(tb, distance_upper_bound=tolerance)
    precision = float((d_pred < tolerance).sum() / len(pb))
    recall = float((d_true < tolerance).sum() / len(tb))
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return f1, precision, recall


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of ``mask``'s bounding box grown by one pixel (clipped to the array), ``None`` if empty.

    Cropping there leaves every boundary pixel of :func:`_boundary` unchanged:
    the extra ring is background, and at the array's edge erosion pads with background.
    """
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(hit[0]) - 1, 0), min(int(hit[-1]) + 2, mask.shape[axis])))
    return tuple(box)


def bf_score(
    pred: np.ndarray,
    truth: np.ndarray,
    num_classes: int,
    valid: np.ndarray | None = None,
    tolerance: float = BF_TOLERANCE,
) -> tuple[float, np.ndarray]:
    """SegNet's boundary F1 of one image: per class, then averaged over the classes in the truth.

    SegNet (TPAMI 2017, §4): "The F1-measure for each class that is present
    in the ground truth test image is averaged to produce an image
    F1-measure"; the dataset BF is the mean of the image values. The
    tolerance is ``tolerance`` × the image diagonal (0.75 %). Pixels outside
    ``valid`` (unlabelled) belong to no class in either map, as MATLAB's
    ``evaluateSemanticSegmentation`` masks them.

    Returns:
        ``(image BF, K per-class F1)``; the image value is ``nan`` when no
        class is present in the truth.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    keep = np.ones(truth.shape, bool) if valid is None else np.asarray(valid).astype(bool)
    theta = tolerance * math.sqrt(sum(n * n for n in truth.shape))
    per_class = np.full(num_classes, math.nan)
    present = []
    for c in range(num_classes):
        t, p = (truth == c) & keep, (pred == c) & keep
        if t.any():
            present.append(c)
        if t.any() or p.any():
            per_class[c] = boundary_f1(p, t, theta)[0]
    image = float(np.mean(per_class[present])) if present else math.nan
    return image, per_class


# --------------------------------------------------------------------------- counts


def count_errors(predicted: Sequence[float], true: Sequence[float]) -> dict[str, float]:
    """Crowd-count errors over images: ``mae``, ``mse`` (mean squared) and ``rmse``.

    The counting papers (MCNN, CVPR 2016; Idrees et al., ECCV 2018 for
    UCF-QNRF) call ``sqrt(mean((C - Ĉ)²))`` "MSE": that is ``rmse`` here.
    """
    p, t = np.asarray(predicted, np.float64), np.asarray(true, np.float64)
    if p.shape != t.shape or p.ndim != 1:
        raise ValueError(f"{p.shape} predicted counts for {t.shape} true counts")
    if not p.size:
        return {"mae": math.nan, "mse": math.nan, "rmse": math.nan, "n": 0}
    err = p - t
    mse = float(np.mean(err**2))
    return {"mae": float(np.mean(np.abs(err))), "mse": mse, "rmse": math.sqrt(mse), "n": int(p.size)}
