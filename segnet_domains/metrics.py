"""Segmentation metrics: Dice, Jaccard (IoU), precision, recall per case and class; mIoU.

Counts come from MONAI's :func:`monai.metrics.get_confusion_matrix` on one-hot
tensors, so the numbers are MONAI's; an ignore mask (pixels outside a retina's
field of view, nodata in a scene) is applied by zeroing both one-hot maps
there, so ignored pixels count as neither true nor false anything.

Undefined ratios (a class absent from both prediction and truth) are ``nan``
and left out of means (``nanmean``), the convention of MONAI's metrics with
``ignore_empty=True``.

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
) -> CaseScores:
    """Confusion counts and per-class scores of one case (see :func:`class_counts`)."""
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
