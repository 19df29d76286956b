"""segnet_domains.metrics: numbers checked by hand, the ignore mask, undefined ratios, mIoU."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segnet_domains.metrics import class_counts, evaluate_case, mean_iou, scores, summarize


def test_counts_and_scores_by_hand() -> None:
    truth = np.array([[0, 1, 1], [0, 0, 1]])
    pred = np.array([[0, 1, 0], [1, 0, 1]])
    counts = class_counts(pred, truth, 2)
    # class 1: tp=2 (0,1),(1,2); fp=1 (1,0); fn=1 (0,2); tn=2
    assert counts[1].tolist() == [2, 1, 2, 1]
    s = scores(counts)
    assert s["dice"][1] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert s["jaccard"][1] == pytest.approx(2 / 4)
    assert s["precision"][1] == pytest.approx(2 / 3)
    assert s["recall"][1] == pytest.approx(2 / 3)


def test_ignore_mask_removes_pixels_from_every_count() -> None:
    truth = np.array([[0, 1, 1], [0, 0, 1]])
    pred = np.array([[0, 1, 0], [1, 0, 1]])
    mask = np.array([[1, 1, 1], [0, 1, 1]], bool)  # ignore the false positive at (1,0)
    c = evaluate_case(pred, truth, 2, mask=mask)
    assert c.counts[1].tolist() == [2, 0, 2, 1]
    assert c.counts.sum(axis=1).tolist() == [5, 5]  # 5 valid pixels per class
    assert c.per_class["precision"][1] == 1.0
    # what is outside the mask never matters
    pred2 = pred.copy()
    pred2[1, 0] = 0
    assert np.array_equal(evaluate_case(pred2, truth, 2, mask=mask).counts, c.counts)


def test_empty_class_is_nan_and_skipped_in_means() -> None:
    truth = np.zeros((4, 4), int)
    pred = np.zeros((4, 4), int)
    c = evaluate_case(pred, truth, 3)
    assert math.isnan(c.per_class["dice"][1]) and math.isnan(c.per_class["dice"][2])
    assert c.per_class["dice"][0] == 1.0
    report = summarize([c], ["bg", "a", "b"])
    assert report["mean"]["dice"] is None  # no foreground anywhere: undefined, JSON null
    assert report["miou"] == 1.0


def test_summary_mean_pooled_and_miou() -> None:
    t = np.zeros((10, 10), int)
    t[:5] = 1
    p_good, p_half = t.copy(), t.copy()
    p_half[:, :5] = 0
    cases = [evaluate_case(p_good, t, 2, name="a"), evaluate_case(p_half, t, 2, name="b")]
    r = summarize(cases, ["background", "fg"])
    assert [c["name"] for c in r["cases"]] == ["a", "b"]
    assert r["cases"][1]["dice"] == pytest.approx(2 * 25 / (25 + 50))
    assert r["mean"]["dice"] == pytest.approx((1 + 2 * 25 / 75) / 2)
    assert r["pooled"]["recall"] == pytest.approx(75 / 100)
    total = cases[0].counts + cases[1].counts
    assert r["miou"] == pytest.approx(mean_iou(total))
    assert r["per_class_mean"]["fg"]["precision"] == 1.0


def test_bad_shapes_and_labels_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        class_counts(np.zeros((2, 2)), np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="outside"):
        class_counts(np.full((2, 2), 3), np.zeros((2, 2)), 2)
