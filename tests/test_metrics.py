"""Metrics of the published protocols on cases counted by hand, and against reference formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segnet_domains.evaluate import protocol_scores
from segnet_domains.metrics import (
    bf_score,
    boundary_f1,
    class_counts,
    class_mean,
    confusion_matrix,
    confusion_scores,
    count_errors,
    evaluate_case,
)
from segnet_domains.protocols import Protocol, get_protocol

# --------------------------------------------------------------------------- confusion matrix

TRUTH = np.array([[0, 0, 1], [1, 2, 2]])
PRED = np.array([[0, 1, 1], [1, 2, 0]])


def test_confusion_matrix_by_hand() -> None:
    # (truth, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0)
    cm = confusion_matrix(PRED, TRUTH, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    sc = confusion_scores(cm)
    assert sc["global_accuracy"] == pytest.approx(4 / 6)
    assert sc["class_accuracy"] == pytest.approx([1 / 2, 2 / 2, 1 / 2])
    # IoU = diag / (row + col - diag): 1/(2+2-1), 2/(2+3-2), 1/(2+1-1)
    assert sc["iou"] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert class_mean(sc["iou"]) == pytest.approx(0.5)
    assert class_mean(sc["class_accuracy"]) == pytest.approx(2 / 3)


def test_confusion_matrix_valid_mask_and_errors() -> None:
    valid = np.ones_like(TRUTH, bool)
    valid[1, 2] = False  # the (truth 2, pred 0) pixel
    assert confusion_matrix(PRED, TRUTH, 3, valid).tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    # an ignored pixel may hold any value (CamVid's void 11)
    truth = TRUTH.copy()
    truth[1, 2] = 11
    assert confusion_matrix(PRED, truth, 3, valid).sum() == 5
    with pytest.raises(ValueError, match="truth has labels outside 0..2"):
        confusion_matrix(PRED, truth, 3)
    with pytest.raises(ValueError, match="differs"):
        confusion_matrix(PRED[:1], TRUTH, 3)


def test_class_mean_absent_classes() -> None:
    values = np.array([0.5, math.nan, 1.0])
    assert class_mean(values) == pytest.approx(0.75)  # skipped
    assert class_mean(values, absent="zero") == pytest.approx(0.5)  # ADE20K's I / (eps + U)
    assert class_mean(values, classes=[0]) == 0.5
    assert math.isnan(class_mean(np.array([math.nan])))


def test_focus_counts_agree_with_monai() -> None:
    """Dice/Jaccard/precision/recall read off the confusion matrix equal MONAI's per-class counts."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (20, 30))
    pred = np.where(rng.random((20, 30)) < 0.7, truth, rng.integers(0, 3, (20, 30)))
    proto = Protocol("x", "test", "labels", class_names=("a", "b", "c"), focus_class=2)
    ours = protocol_scores(confusion_matrix(pred, truth, 3), proto)
    tp, fp, _, fn = class_counts(pred, truth, 3)[2]  # MONAI get_confusion_matrix
    assert ours["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert ours["jaccard"] == pytest.approx(tp / (tp + fp + fn))
    assert ours["precision"] == pytest.approx(tp / (tp + fp))
    assert ours["recall"] == pytest.approx(tp / (tp + fn))


def test_evaluate_case_ignore_index() -> None:
    truth = np.array([[0, 1, 11], [1, 11, 0]])  # 11 = CamVid void
    pred = np.array([[0, 1, 1], [0, 0, 0]])
    case = evaluate_case(pred, truth, 2, ignore_index=11)
    # counted pixels: (0,0) (1,1) (1,0) (0,0): class 1 tp=1 fp=0 fn=1
    assert case.counts[1].tolist() == [1, 0, 2, 1]
    assert case.per_class["dice"][1] == pytest.approx(2 / 3)
    same = evaluate_case(pred, np.where(truth == 11, 0, truth), 2, mask=truth != 11)
    assert np.array_equal(case.counts, same.counts)


def test_evaluate_case_ignores_whatever_is_predicted_at_ignored_pixels() -> None:
    truth = np.array([[0, 1, 255], [1, 255, 0]])  # 255: no truth (an aerial label raster's nodata)
    pred = np.array([[0, 1, 255], [0, 3, 0]])  # the tiler's nodata and a stray class where truth is missing
    case = evaluate_case(pred, truth, 2, ignore_index=255)
    assert case.counts[1].tolist() == [1, 0, 2, 1]


# --------------------------------------------------------------------------- ADE20K: the sceneparsing formula


def _scene_parsing(preds: list[np.ndarray], labels: list[np.ndarray], num_class: int) -> tuple[float, float]:
    """mIoU and pixel accuracy exactly as ADE20K's sceneparsing ``utils_eval.py`` computes them.

    ``intersectionAndUnion`` and ``pixelAccuracy`` on predictions and labels in
    the annotation space (1..K, 0 = unlabelled), summed over images,
    ``IoU = I / (eps + U)``, mean over K classes.
    """
    inter_sum, union_sum, correct, labelled = 0, 0, 0, 0
    for im_pred, im_lab in zip(preds, labels):
        im_pred = im_pred * (im_lab > 0)
        intersection = im_pred * (im_pred == im_lab)
        area_i, _ = np.histogram(intersection, bins=num_class, range=(1, num_class))
        area_p, _ = np.histogram(im_pred, bins=num_class, range=(1, num_class))
        area_l, _ = np.histogram(im_lab, bins=num_class, range=(1, num_class))
        inter_sum = inter_sum + area_i
        union_sum = union_sum + area_p + area_l - area_i
        labelled += np.sum(im_lab > 0)
        correct += np.sum((im_pred == im_lab) * (im_lab > 0))
    iou = inter_sum / (np.spacing(1) + union_sum)
    return float(iou.mean()), correct / labelled


@pytest.mark.parametrize("num_class", [5, 150])
def test_ade20k_protocol_matches_sceneparsing(num_class: int) -> None:
    rng = np.random.default_rng(num_class)
    proto = get_protocol("ade20k")
    if num_class != 150:
        proto = Protocol(
            "ade_like",
            "test",
            "labels",
            tuple(map(str, range(num_class))),
            unlabelled=0,
            truth_offset=-1,
            absent="zero",
        )
    labels = [rng.integers(0, num_class + 1, (24, 32)) for _ in range(3)]  # 0 = unlabelled
    preds = [  # our predictions are model classes 0..K-1 = annotation - 1
        np.where(rng.random(lab.shape) < 0.6, np.maximum(lab, 1), rng.integers(1, num_class + 1, lab.shape))
        - 1
        for lab in labels
    ]
    total = np.zeros((num_class, num_class), np.int64)
    for pred, lab in zip(preds, labels):
        classes, valid = proto.map_truth(lab)
        total += confusion_matrix(pred, classes, num_class, valid)
    ours = protocol_scores(total, proto, absent=proto.absent)
    ref_miou, ref_acc = _scene_parsing([p + 1 for p in preds], labels, num_class)
    assert ours["miou"] == pytest.approx(ref_miou, rel=1e-9)
    assert ours["global_accuracy"] == pytest.approx(ref_acc, rel=1e-12)


# --------------------------------------------------------------------------- boundary F1


def test_bf_score_by_hand() -> None:
    """A 5×5 square shifted one pixel right on a 10×10 image; the 0.106 px tolerance takes exact hits only."""
    truth = np.zeros((10, 10), int)
    truth[2:7, 2:7] = 1
    pred = np.zeros((10, 10), int)
    pred[2:7, 3:8] = 1
    image, per_class = bf_score(pred, truth, 2)
    # square: 16 boundary pixels each; shared = rows 2 and 6, columns 3..6 -> 8: P = R = 1/2
    assert per_class[1] == pytest.approx(0.5)
    # background: 36 image-border pixels + the 20 pixels 4-adjacent to the square, each;
    # shared = the 36 border pixels + rows 1 and 7, columns 3..6 -> 44: P = R = 44/56
    assert per_class[0] == pytest.approx(44 / 56)
    assert image == pytest.approx((0.5 + 44 / 56) / 2)


def test_bf_tolerance_is_strict_and_scales_with_the_diagonal() -> None:
    truth = np.zeros((100, 100), bool)
    truth[20:50, 20:50] = True
    pred = np.roll(truth, 1, axis=1)
    # tolerance 0.75 % of the 141.4-pixel diagonal = 1.06 px: every 1-pixel miss is a hit
    assert bf_score(pred.astype(int), truth.astype(int), 2)[1][1] == pytest.approx(1.0)
    # strictly closer than the tolerance: at exactly 1 px the shifted edges miss
    f1, p, r = boundary_f1(pred, truth, 1.0)
    assert f1 < 1.0 and p == r
    assert boundary_f1(pred, truth, 1.0001)[0] == pytest.approx(1.0)


def test_bf_absent_classes() -> None:
    truth = np.zeros((8, 8), int)
    truth[2:5, 2:5] = 1
    pred = np.zeros((8, 8), int)
    pred[6:8, 6:8] = 2  # class 1 missed entirely, class 2 not in the truth
    image, per_class = bf_score(pred, truth, 3)
    assert per_class[1] == 0.0  # present in the truth, no predicted boundary
    assert math.isnan(per_class[2])  # only predicted: recall 0/0 (MATLAB: NaN), not averaged
    assert image == pytest.approx((per_class[0] + 0.0) / 2)
    assert math.isnan(boundary_f1(np.zeros((4, 4), bool), np.zeros((4, 4), bool), 1.0)[0])


def _matlab_bfscore(pred: np.ndarray, true: np.ndarray, theta: float) -> float:
    """MATLAB ``bwbfscore2`` written out: erosion with a cross after zero padding, then the
    documented pairwise block ``D = (dI² + dJ²) < θ²``, ``precision = nnz(any(D,2)) / Npred``."""

    def boundary(bw: np.ndarray) -> np.ndarray:
        p = np.pad(bw, 1)
        eroded = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        return bw & ~eroded

    ip = np.argwhere(boundary(pred)).astype(float)
    it = np.argwhere(boundary(true)).astype(float)
    d = ((ip[:, None, :] - it[None, :, :]) ** 2).sum(-1) < theta**2
    precision = d.any(1).sum() / len(ip)
    recall = d.any(0).sum() / len(it)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_bf_matches_matlab_definition_on_random_maps() -> None:
    rng = np.random.default_rng(3)
    from scipy import ndimage

    for seed in range(4):
        noise = ndimage.gaussian_filter(rng.normal(size=(3, 60, 80)), 4)
        truth = noise.argmax(0)
        pred = ndimage.shift(truth, (seed % 3 - 1, 2), order=0, mode="nearest")
        theta = 0.0075 * math.hypot(60, 80) * (1 + seed)  # 0.75 px … 3 px
        _, per_class = bf_score(pred, truth, 3, tolerance=0.0075 * (1 + seed))
        for c in range(3):
            if (truth == c).any() and (pred == c).any():
                assert per_class[c] == pytest.approx(_matlab_bfscore(pred == c, truth == c, theta), abs=1e-12)


# --------------------------------------------------------------------------- counts


def test_count_errors_by_hand() -> None:
    # errors -2, 0, +4
    e = count_errors([10, 20, 30], [12, 20, 26])
    assert e["mae"] == pytest.approx(2.0)
    assert e["mse"] == pytest.approx(20 / 3)
    assert e["rmse"] == pytest.approx(math.sqrt(20 / 3))  # the counting papers' "MSE"
    assert e["n"] == 3
    with pytest.raises(ValueError):
        count_errors([1, 2], [1])
