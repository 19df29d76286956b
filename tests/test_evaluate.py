"""``evaluate_protocol``: every protocol on tiny real files, numbers worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest

from segnet_domains.errors import InputError
from segnet_domains.evaluate import evaluate_protocol
from segnet_domains.protocols import PROTOCOLS, get_protocol
from segnet_domains.synthetic.brain import PHANTOM_AFFINE
from segnet_domains.synthetic.layouts import write_annotation


def _pngs(root: Path, pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[Path, Path]:
    pred, truth = root / "pred", root / "truth"
    pred.mkdir()
    truth.mkdir()
    for name, (p, t) in pairs.items():
        iio.imwrite(pred / f"{name}.png", np.asarray(p, np.uint8))
        iio.imwrite(truth / f"{name}.png", np.asarray(t, np.uint8))
    return pred, truth


def test_registry_is_complete_and_declarative() -> None:
    names = {p.name for p in PROTOCOLS.values()}
    assert names == {"camvid", "sunrgbd", "mfn", "ade20k", "skyscapes", "tlcgis", "atlas", "rite", "counting"}
    assert get_protocol("camvid").num_classes == 11 and get_protocol("camvid").ignored_values == (11,)
    assert get_protocol("sunrgbd").num_classes == 37 and get_protocol("sunrgbd").ignored_values == (0,)
    assert get_protocol("mfn").num_classes == 9 and get_protocol("mfn").ignored_values == ()
    assert get_protocol("ade20k").num_classes == 150 and get_protocol("ade20k").absent == "zero"
    assert get_protocol("skyscapes").num_classes == 20
    assert get_protocol("ucf_qnrf") is get_protocol("counting")
    with pytest.raises(InputError, match="unknown protocol 'pascal'"):
        get_protocol("pascal")


def test_camvid_dataset_confusion_matrix(tmp_path: Path) -> None:
    pred, truth = _pngs(
        tmp_path,
        {
            "0001TP_006690": ([[0, 1, 1], [1, 2, 0]], [[0, 0, 1], [1, 2, 11]]),
            "Seq05VD_f00000": ([[3, 3, 4], [10, 9, 5]], [[3, 3, 3], [10, 10, 11]]),
        },
    )
    r = evaluate_protocol(pred, truth, "camvid")
    m = r["metrics"]
    assert list(m) == ["global_accuracy", "class_accuracy", "miou", "bf"]
    assert m["global_accuracy"] == pytest.approx(7 / 10)  # 10 counted pixels (2 void), 7 right
    # class accuracy over the 5 classes with true pixels: 1/2, 2/2, 1/1, 2/3, 1/2
    assert m["class_accuracy"] == pytest.approx((0.5 + 1 + 1 + 2 / 3 + 0.5) / 5)
    # IoU of the 7 classes seen: sky 1/2, building 2/3, pole 1, road 2/3, pavement 0, pedestrian 0,
    # bicyclist 1/2
    # (classes 5-8 never counted: the 5 predicted on void does not count)
    assert m["miou"] == pytest.approx((0.5 + 2 / 3 + 1 + 2 / 3 + 0 + 0 + 0.5) / 7)
    assert r["per_class"]["pavement"]["iou"] == 0.0 and r["per_class"]["tree"]["iou"] is None
    assert np.asarray(r["confusion_matrix"]).sum() == 10
    assert [c["name"] for c in r["cases"]] == ["0001TP_006690", "Seq05VD_f00000"]


def test_camvid_bf_by_hand(tmp_path: Path) -> None:
    truth = np.zeros((10, 10), np.uint8)
    truth[2:7, 2:7] = 3
    pred = np.zeros((10, 10), np.uint8)
    pred[2:7, 3:8] = 3
    r = evaluate_protocol(*_pngs(tmp_path, {"a": (pred, truth)}), "camvid")
    # see tests/test_metrics.py: road 8/16 of the boundary shared, sky 44/56
    assert r["metrics"]["bf"] == pytest.approx((0.5 + 44 / 56) / 2)
    assert r["per_class"]["road"]["bf"] == pytest.approx(0.5)
    assert r["per_class"]["car"]["bf"] is None


def test_sunrgbd_offset_and_unlabelled(tmp_path: Path) -> None:
    # predictions in seglabel encoding as predict-split writes them; 0 unlabelled
    pair = {"img-000001": ([[6, 1, 2], [37, 36, 1]], [[0, 1, 2], [37, 37, 0]])}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    r = evaluate_protocol(*_pngs(tmp_path / "a", pair), "sunrgbd")
    assert r["metrics"]["global_accuracy"] == pytest.approx(3 / 4)
    bad = {"img-000001": ([[1]], [[38]])}
    with pytest.raises(InputError, match=r"truth has values 38 that are neither classes nor ignored"):
        evaluate_protocol(*_pngs(tmp_path / "b", bad), "sunrgbd")


def test_mfn_counts_unlabelled(tmp_path: Path) -> None:
    pair = {"00001D": ([[0, 1, 1], [2, 8, 0]], [[0, 0, 1], [2, 8, 8]])}
    r = evaluate_protocol(*_pngs(tmp_path, pair), "mfn")
    # IoU: unlabelled 1/3, car 1/2, person 1, bump 1/2 (unlabelled is a class: RTFNet's 9-class mean)
    assert r["metrics"]["miou"] == pytest.approx((1 / 3 + 1 / 2 + 1 + 1 / 2) / 4)
    assert r["metrics"]["class_accuracy"] == pytest.approx((0.5 + 1 + 1 + 0.5) / 4)


def test_ade20k_summed_and_zero_for_absent(tmp_path: Path) -> None:
    pair = {"ADE_val_00000001": ([[8, 1], [2, 149]], [[0, 1], [2, 150]])}
    r = evaluate_protocol(*_pngs(tmp_path, pair), "ade20k")
    assert r["metrics"]["global_accuracy"] == pytest.approx(2 / 3)  # over labelled pixels
    assert r["metrics"]["miou"] == pytest.approx(2 / 150)  # classes 1, 2 right; the rest score 0
    # the same predictions as model classes (predict-image): annotation value - 1
    (tmp_path / "model").mkdir()
    iio.imwrite(tmp_path / "model" / "ADE_val_00000001.png", np.array([[7, 0], [1, 148]], np.uint8))
    same = evaluate_protocol(tmp_path / "model", tmp_path / "truth", "ade20k", pred_encoding="model")
    assert same["metrics"] == r["metrics"]
    with pytest.raises(
        InputError, match=r"prediction has values 0 outside protocol 'ade20k''s native classes"
    ):
        evaluate_protocol(tmp_path / "model", tmp_path / "truth", "ade20k")


def test_skyscapes_ignores_0(tmp_path: Path) -> None:
    pair = {"2525": ([[1, 20], [4, 5]], [[1, 20], [0, 6]])}
    assert evaluate_protocol(*_pngs(tmp_path, pair), "skyscapes")["metrics"][
        "global_accuracy"
    ] == pytest.approx(2 / 3)


def test_tlcgis_road_iou_is_global(tmp_path: Path) -> None:
    pairs = {
        "10078660_15": ([[0, 1, 1], [0, 0, 1]], [[0, 0, 255], [0, 255, 255]]),  # road 0: tp 2, fp 1, fn 1
        "10078675_15": (np.zeros((2, 3)), np.zeros((2, 3))),  # all road, all right: tp 6
    }
    r = evaluate_protocol(*_pngs(tmp_path, pairs), "tlcgis")
    assert r["metrics"] == {"iou": pytest.approx(8 / 10)}  # not the mean of 2/4 and 6/6
    assert r["cases"][0]["iou"] == pytest.approx(0.5)


def test_atlas_per_patient_3d(tmp_path: Path) -> None:
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    t = np.zeros((10, 10, 4), np.uint8)
    t[2:6, 2:6] = 1  # 64 voxels
    p = np.zeros_like(t)
    p[2:6, 2:8] = 1  # 96 voxels, the 64 among them
    for name, (a, b) in {"sub-r001s001": (p, t), "sub-r001s002": (t, t)}.items():
        nib.save(nib.Nifti1Image(a, PHANTOM_AFFINE), pred / f"{name}_pred.nii.gz")
        nib.save(nib.Nifti1Image(b * 255, PHANTOM_AFFINE), truth / f"{name}_ses-1_mask.nii.gz")  # 0/255 mask
    r = evaluate_protocol(pred, truth, "atlas")
    m = r["metrics"]
    assert m["dice"] == pytest.approx((0.8 + 1) / 2)  # per patient, then the mean
    assert m["jaccard"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["precision"] == pytest.approx((2 / 3 + 1) / 2) and m["recall"] == 1.0
    assert r["pooled"]["dice"] == pytest.approx(2 * 128 / (2 * 128 + 32))


def test_rite_inside_the_field_of_view(tmp_path: Path) -> None:
    truth = np.zeros((16, 16), np.uint8)
    truth[4:12, 6:8] = 255  # 16 vessel pixels
    pred = (truth > 0).astype(np.uint8)
    pred[0:2, :] = 1  # wrong, but outside the field of view
    pred[4:6, 6:8] = 0  # 4 vessel pixels missed inside it
    fov = np.zeros((16, 16), np.uint8)
    fov[3:13, 3:13] = 255
    pred_dir, truth_dir = _pngs(tmp_path, {"01_test": (pred, truth)})
    (tmp_path / "mask").mkdir()
    iio.imwrite(tmp_path / "mask" / "01_test_mask.gif", fov)
    with pytest.raises(InputError, match="needs --mask"):
        evaluate_protocol(pred_dir, truth_dir, "rite")
    r = evaluate_protocol(pred_dir, truth_dir, "rite", valid_masks=tmp_path / "mask")
    assert r["metrics"]["dice"] == pytest.approx(2 * 12 / (2 * 12 + 4))
    assert r["metrics"]["jaccard"] == pytest.approx(12 / 16)


def test_prediction_outside_the_classes(tmp_path: Path) -> None:
    pred, truth = _pngs(tmp_path, {"a": ([[11, 0]], [[0, 0]])})
    with pytest.raises(
        InputError, match=r"a.png: prediction has values 11 outside protocol 'camvid''s native classes"
    ):
        evaluate_protocol(pred, truth, "camvid")


def test_counting(tmp_path: Path) -> None:
    pred, truth = tmp_path / "pred", tmp_path / "Test"
    pred.mkdir()
    truth.mkdir()
    write_annotation(truth / "img_0001_ann.mat", np.ones((12, 2)))
    write_annotation(truth / "img_0002_ann.mat", np.ones((20, 2)))
    write_annotation(truth / "img_0003_ann.mat", np.ones((26, 2)))
    (pred / "img_0001.txt").write_text("10\n")
    np.save(pred / "img_0002.npy", np.full((4, 5), 1.0, np.float32))  # a density map summing to 20
    (pred / "img_0003.txt").write_text("30.0\n")
    r = evaluate_protocol(pred, truth, "counting")
    assert r["metrics"]["mae"] == pytest.approx(2.0)  # errors -2, 0, +4
    assert r["metrics"]["rmse"] == pytest.approx(math.sqrt(20 / 3))
    assert r["metrics"]["mse"] == pytest.approx(20 / 3)
    assert [c["name"] for c in r["cases"]] == ["img_0001", "img_0002", "img_0003"]
    (pred / "img_0003.txt").write_text("thirty\n")
    with pytest.raises(InputError, match="img_0003.txt: expected one number"):
        evaluate_protocol(pred, truth, "counting")


def test_rite_colour_coded_av_truth(tmp_path: Path) -> None:
    """RITE as distributed: ``test/av/NN_test.png`` colour codes and ``test/mask/NN_test_mask.gif``."""
    from segnet_domains.io.images import read_image
    from segnet_domains.synthetic.layouts import rite_miniature

    root = rite_miniature(tmp_path / "RITE", train=0, test=1, size=(64, 72))
    av = iio.imread(root / "test" / "av" / "01_test.png")[..., :3]
    fov = read_image(root / "test" / "mask" / "01_test_mask.gif")
    fov = (fov[..., 0] if fov.ndim == 3 else fov) > 0
    vessel = (av >= 128).any(-1)  # red artery, blue vein, green crossing, white unknown: all vessel
    pred = vessel.astype(np.uint8)
    missed = np.argwhere(vessel & fov)[:5]
    pred[tuple(missed.T)] = 0  # five vessel pixels missed inside the field of view
    pred[~fov] = 1 - pred[~fov]  # everything wrong outside it, where nothing counts
    (tmp_path / "pred").mkdir()
    iio.imwrite(tmp_path / "pred" / "01_test.png", pred)
    r = evaluate_protocol(tmp_path / "pred", root / "test" / "av", "rite", valid_masks=root / "test" / "mask")
    v = int((vessel & fov).sum())
    assert v > 20
    assert r["metrics"]["dice"] == pytest.approx(2 * (v - 5) / (2 * (v - 5) + 5))
    assert r["metrics"]["jaccard"] == pytest.approx((v - 5) / v)


def test_atlas_r12_ids_pair(tmp_path: Path) -> None:
    """ATLAS R1.2 names: ``c0001s0004t01_LesionSmooth_stx`` truth, a prediction named after the T1w."""
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    t = np.zeros((6, 6, 3), np.uint8)
    t[1:3, 1:3, 1] = 1  # 4 voxels
    p = t.copy()
    p[4, 4, 1] = 1  # one false positive
    nib.save(nib.Nifti1Image(t, PHANTOM_AFFINE), truth / "c0001s0004t01_LesionSmooth_stx.nii.gz")
    nib.save(nib.Nifti1Image(p, PHANTOM_AFFINE), pred / "c0001s0004t01_t1w_stx_pred.nii.gz")
    r = evaluate_protocol(pred, truth, "atlas")
    assert r["n_cases"] == 1 and r["metrics"]["precision"] == pytest.approx(4 / 5)
    assert r["metrics"]["dice"] == pytest.approx(8 / 9)
