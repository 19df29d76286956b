"""Score predicted label files against ground truth: ``segnet-domains evaluate``.

Files or folders; folders are matched by name (the file name without its
image/NIfTI suffixes; failing that, the BIDS ``sub-…`` subject or the ATLAS
R1.x ``cNNNNsNNNNtNN`` id). NIfTI masks
(``.nii``/``.nii.gz``) and 2D label images (PNG, TIFF, GIF) are read; a
binary ``0/255`` image counts as ``0/1``. Pairs must have the same shape and,
for NIfTI, the same affine. An optional valid mask (file or folder, e.g.
RITE's ``NN_test_mask.gif`` fields of view, matched by name with or without
a ``_mask`` suffix) restricts every count to its non-zero pixels.

:func:`evaluate_protocol` scores the same files the way a published result
was scored (:mod:`segnet_domains.protocols`): the truth mapped as the data set
distributes it, one confusion matrix over the test set or per-image/per-patient
means, SegNet's BF score, crowd-count errors. It streams: one pair in memory
at a time.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segnet_domains.counting.annotations import read_count
from segnet_domains.errors import InputError
from segnet_domains.io.images import read_image
from segnet_domains.io.safety import file_kind
from segnet_domains.medical.nifti import is_nifti, read_volume
from segnet_domains.medical.rite import decode_av
from segnet_domains.metrics import (
    _json_ready,
    bf_score,
    class_mean,
    confusion_matrix,
    confusion_scores,
    count_errors,
    evaluate_case,
    summarize,
)
from segnet_domains.protocols import Protocol, get_protocol

LABEL_SUFFIXES = (".nii.gz", ".nii", ".png", ".tif", ".tiff", ".gif")


@dataclass
class LabelFile:
    """Labels read from a file, with the affine of a NIfTI (``None`` for 2D images)."""

    path: Path
    labels: np.ndarray
    affine: np.ndarray | None


def case_name(path: Path, suffixes: tuple[str, ...] = LABEL_SUFFIXES) -> str:
    """File name without its label-file suffix (``a.nii.gz`` → ``a``)."""
    name = path.name
    for suffix in suffixes:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _subject(name: str) -> str | None:
    """The subject of a BIDS name (``sub-r001s001``, ATLAS R2.0) or an ATLAS R1.x one (``c0001s0004t01``)."""
    m = re.match(r"(sub-[A-Za-z0-9]+|c\d{4}s\d{4}t\d{2})", name)
    return m.group(1) if m else None


def _label_files(folder: Path, suffixes: tuple[str, ...] = LABEL_SUFFIXES) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(suffixes))


def match_pairs(
    pred: str | Path,
    truth: str | Path,
    suffixes: tuple[str, ...] = LABEL_SUFFIXES,
    truth_suffixes: tuple[str, ...] | None = None,
    truth_stem: Callable[[str], str] | None = None,
) -> list[tuple[str, Path, Path]]:
    """``(case name, prediction, truth)`` pairs from two files or two folders.

    Args:
        pred: prediction file or folder.
        truth: truth file or folder.
        suffixes: file kinds of the predictions (and of the truths unless
            ``truth_suffixes``).
        truth_suffixes: file kinds of the truths.
        truth_stem: maps a truth's name (suffix dropped) to the prediction's
            (counting: ``img_0001_ann`` → ``img_0001``).

    Raises:
        InputError: a missing path, a file paired with a folder, an empty
            folder, or no prediction matching any truth.
    """
    pred, truth = Path(pred), Path(truth)
    for p in (pred, truth):
        kind = file_kind(p)
        if kind is not None and not kind.startswith("is a folder"):
            raise InputError(p, kind)
    truth_suffixes = truth_suffixes or suffixes
    stem = truth_stem or (lambda name: name)
    if pred.is_file() and truth.is_file():
        return [(stem(case_name(truth, truth_suffixes)), pred, truth)]
    if pred.is_file() != truth.is_file():
        raise InputError(pred, "--pred and --truth must both be files or both be folders")
    preds, truths = _label_files(pred, suffixes), _label_files(truth, truth_suffixes)
    if not truths:
        raise InputError(truth, f"no label files ({', '.join(truth_suffixes)}) in the folder")
    if not preds:
        raise InputError(pred, f"no label files ({', '.join(suffixes)}) in the folder")
    pairs, missing = _pair_by_name(preds, truths, suffixes, truth_suffixes, stem)
    if not pairs:
        raise InputError(pred, f"no prediction matches a truth file by name (e.g. {truths[0].name})")
    if missing:
        warnings.warn(
            f"{len(missing)} truth file(s) without a prediction: {', '.join(missing[:5])}", stacklevel=2
        )
    return pairs


def _pair_by_name(
    preds: list[Path],
    truths: list[Path],
    suffixes: tuple[str, ...],
    truth_suffixes: tuple[str, ...],
    stem: Callable[[str], str],
) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """``(pairs, truths without a prediction)``: by case name, else by the subject's only prediction."""
    by_name = {case_name(p, suffixes): p for p in preds}
    by_subject: dict[str, list[Path]] = {}
    for p in preds:
        sub = _subject(case_name(p, suffixes))
        if sub:
            by_subject.setdefault(sub, []).append(p)
    pairs, missing = [], []
    for t in truths:
        name = stem(case_name(t, truth_suffixes))
        match = by_name.get(name)
        sub = _subject(name)
        if match is None and sub and len(by_subject.get(sub, [])) == 1:
            match = by_subject[sub][0]
        if match is None:
            missing.append(t.name)
        else:
            pairs.append((name, match, t))
    return pairs, missing


def read_labels(
    path: Path, binary_255: bool = True, colour: Callable[[np.ndarray, str], np.ndarray] | None = None
) -> LabelFile:
    """Read a label file as integer classes.

    Args:
        path: NIfTI or 2D label image.
        binary_255: read an image holding only 0 and 255 as a 0/1 mask.
        colour: decoder of a colour-coded label image (``H×W×3`` → ``H×W``
            labels), e.g. RITE's artery/vein PNGs; without it colour is refused.

    Raises:
        InputError: unreadable, not integer-valued, or a colour image.
    """
    if is_nifti(path):
        vol = read_volume(path)
        data, affine = vol.data, vol.affine
    else:
        data, affine = read_image(path), None
        if data.ndim == 3 and colour is not None:
            data = colour(data, str(path))
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
    if binary_255 and values.size <= 2 and values.max(initial=0) == 255:  # a 0/255 binary mask
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


def load_pair(
    name: str,
    pred: Path,
    truth: Path,
    valid_masks: str | Path | None = None,
    binary_255: bool = True,
    truth_colour: Callable[[np.ndarray, str], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Prediction labels, truth labels and valid mask (or ``None``) of one case, checked to align.

    ``truth_colour`` decodes a colour-coded truth image (see :func:`read_labels`).

    Raises:
        InputError: unreadable files, shape or (NIfTI) affine mismatch, a mask of another shape.
    """
    lp, lt = read_labels(pred, binary_255), read_labels(truth, binary_255, truth_colour)
    if lp.labels.shape != lt.labels.shape:
        raise InputError(
            pred, f"prediction shape {lp.labels.shape} differs from truth {truth.name} {lt.labels.shape}"
        )
    if lp.affine is not None and lt.affine is not None and not np.allclose(lp.affine, lt.affine, atol=1e-3):
        raise InputError(pred, f"prediction affine differs from truth {truth.name} (voxel grids not aligned)")
    valid = None
    if valid_masks is not None:
        vm = read_labels(find_valid_mask(Path(valid_masks), name))
        if vm.labels.shape != lt.labels.shape:
            raise InputError(vm.path, f"mask shape {vm.labels.shape} differs from truth {lt.labels.shape}")
        valid = vm.labels > 0
    return lp.labels, lt.labels, valid


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
        lp, lt, valid = load_pair(name, p, t, valid_masks)
        loaded.append((name, lp, lt, valid))
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


# --------------------------------------------------------------------------- protocols


def _rite_vessels(rgb: np.ndarray, source: str) -> np.ndarray:
    """RITE's colour-coded ``av/NN_test.png`` → vessel (any annotated colour) / background."""
    return (decode_av(rgb, source) > 0).astype(np.uint8)


#: Decoders of colour-coded truth images, by :attr:`Protocol.colour_truth`.
COLOUR_DECODERS: dict[str, Callable[[np.ndarray, str], np.ndarray]] = {"rite_av": _rite_vessels}


def _focus_counts(cm: np.ndarray, c: int) -> dict[str, float]:
    """Dice, Jaccard, precision, recall of class ``c`` read off a confusion matrix.

    ``tp = cm[c,c]``, ``fp`` = the rest of column c, ``fn`` = the rest of row c:
    the same counts MONAI's ``get_confusion_matrix`` gives (tested).
    """
    tp = float(cm[c, c])
    fp, fn = float(cm[:, c].sum()) - tp, float(cm[c, :].sum()) - tp

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else math.nan

    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "jaccard": ratio(tp, tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
    }


def protocol_scores(cm: np.ndarray, protocol: Protocol, absent: str = "skip") -> dict[str, float]:
    """The protocol's confusion-matrix metrics (all but ``bf`` and counts) from one ``K×K`` matrix.

    ``absent`` decides how classes never seen enter the class means (the
    per-image rows always skip them).
    """
    sc = confusion_scores(cm)
    out = {
        "global_accuracy": sc["global_accuracy"],
        "class_accuracy": class_mean(sc["class_accuracy"], absent=absent),
        "miou": class_mean(sc["iou"], absent=absent),
    }
    if protocol.focus_class is not None:
        out.update(_focus_counts(cm, protocol.focus_class))
    return out


def _score_labels(
    protocol: Protocol,
    pairs: list[tuple[str, Path, Path]],
    valid_masks: str | Path | None,
    pred_encoding: str = "native",
) -> dict[str, Any]:
    """Stream the label pairs: one confusion matrix per case, summed; BF per image."""
    k = protocol.num_classes
    total = np.zeros((k, k), np.int64)
    rows: list[dict[str, Any]] = []
    bf_rows: list[np.ndarray] = []
    for name, p, t in pairs:
        colour = COLOUR_DECODERS[protocol.colour_truth] if protocol.colour_truth else None
        pred_raw, truth_raw, fov = load_pair(name, p, t, valid_masks, protocol.binary_255, colour)
        classes, valid = protocol.map_truth(truth_raw, str(t))
        if fov is not None:
            valid &= fov
        pred = protocol.map_prediction(pred_raw, str(p), pred_encoding)
        cm = confusion_matrix(pred, classes, k, valid)
        total += cm
        row: dict[str, Any] = {"name": name, **protocol_scores(cm, protocol), "pixels": int(cm.sum())}
        if "bf" in protocol.metrics:
            row["bf"], per_class = bf_score(pred, classes, k, valid)
            bf_rows.append(per_class)
        rows.append(row)
    pooled = protocol_scores(total, protocol, absent=protocol.absent)
    if protocol.aggregation == "dataset":
        headline = dict(pooled)
    else:  # per image / per patient, then the mean over cases
        headline = {m: _mean([r[m] for r in rows]) for m in pooled}
    sc = confusion_scores(total)
    per_class: dict[str, dict[str, float]] = {
        n: {"iou": sc["iou"][i], "accuracy": sc["class_accuracy"][i]}
        for i, n in enumerate(protocol.class_names)
    }
    if bf_rows:  # the image BF averaged over images; per class, over the images where it is defined
        headline["bf"] = _mean([r["bf"] for r in rows])
        stack = np.asarray(bf_rows)
        for i, n in enumerate(protocol.class_names):
            per_class[n]["bf"] = _mean(list(stack[:, i]))
    return {
        "metrics": {m: headline.get(m) for m in protocol.metrics},
        "all_metrics": headline,
        "pooled": pooled,
        "per_class": per_class,
        "confusion_matrix": total.tolist(),
        "cases": rows,
    }


def _score_counts(pairs: list[tuple[str, Path, Path]]) -> dict[str, Any]:
    rows = []
    for name, p, t in pairs:
        predicted, true = read_count(p), read_count(t)
        rows.append({"name": name, "predicted": predicted, "true": true, "error": predicted - true})
    errors = count_errors([r["predicted"] for r in rows], [r["true"] for r in rows])
    errors.pop("n")
    return {"metrics": errors, "all_metrics": errors, "pooled": {}, "per_class": {}, "cases": rows}


def _mean(values: list[float]) -> float:
    arr = np.asarray(values, np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan


def evaluate_protocol(
    pred: str | Path,
    truth: str | Path,
    protocol: str | Protocol,
    valid_masks: str | Path | None = None,
    pred_encoding: str = "native",
) -> dict[str, Any]:
    """Score predictions against truth the way the protocol's source did.

    Args:
        pred: prediction file or folder (label images, NIfTI masks, or count
            ``.txt``/density ``.npy`` files for counting).
        truth: truth file or folder, as the data set distributes it.
        protocol: a name in :data:`~segnet_domains.protocols.PROTOCOLS` or a :class:`Protocol`.
        valid_masks: file or folder of valid-pixel masks (required by ``rite``).
        pred_encoding: ``"native"`` (predictions in the data set's encoding, as
            ``predict-split`` writes them) or ``"model"`` (class indices, as
            ``predict-image`` writes them); see :mod:`segnet_domains.protocols`.

    Returns:
        JSON-ready ``{"protocol", "source", "aggregation", "metrics": {the
        headline metrics, in the source's order}, "all_metrics", "pooled",
        "per_class", "confusion_matrix" (labels), "cases": [per image/patient],
        "n_cases", "notes"}``; undefined values are ``None``.

    Raises:
        InputError: unknown protocol, unmatched files, misaligned pairs,
            truth values the protocol does not know, predictions outside its
            classes, a missing mask the protocol requires.
    """
    proto = get_protocol(protocol)
    if proto.requires_mask and valid_masks is None:
        raise InputError(truth, f"protocol {proto.name!r} needs --mask (valid pixels, e.g. fields of view)")
    pairs = match_pairs(pred, truth, proto.pred_files, proto.truth_files, proto.case_name)
    if proto.kind == "counts":
        result = _score_counts(pairs)
    else:
        result = _score_labels(proto, pairs, valid_masks, pred_encoding)
    report = {
        "protocol": proto.name,
        "source": proto.source,
        "aggregation": proto.aggregation,
        **result,
        "n_cases": len(result["cases"]),
        "notes": proto.notes,
    }
    return _json_ready(report)


def format_protocol_report(report: dict[str, Any]) -> str:
    """Plain text: the protocol, its source, one line per headline metric."""
    lines = [
        f"protocol {report['protocol']}: {report['source']}",
        f"{report['n_cases']} case(s), {report['aggregation']} aggregation",
    ]
    for name, value in report["metrics"].items():
        label = "rmse (the papers' 'MSE')" if name == "rmse" else name
        text = "n/a" if value is None else f"{value:.4f}"
        lines.append(f"  {label:<32} {text}")
    return "\n".join(lines)
