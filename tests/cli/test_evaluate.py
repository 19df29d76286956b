"""``segnet-domains evaluate``: files and folders, NIfTI and PNG, numbers, errors."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest

from segnet_domains.cli import main
from segnet_domains.synthetic.brain import PHANTOM_AFFINE


def _nii(path: Path, data: np.ndarray, affine: np.ndarray = PHANTOM_AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.uint8), affine), path)
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    t = np.zeros((10, 10, 4), np.uint8)
    t[2:6, 2:6] = 1  # 64 voxels
    p = np.zeros_like(t)
    p[2:6, 2:8] = 1  # 96 voxels, 64 right
    _nii(truth / "sub-r001s001.nii.gz", t)
    _nii(pred / "sub-r001s001.nii.gz", p)
    _nii(truth / "sub-r001s002.nii.gz", t)
    _nii(pred / "sub-r001s002.nii.gz", t)
    return pred, truth


def test_folders_matched_by_name_json(folders, capsys: pytest.CaptureFixture[str]) -> None:
    pred, truth = folders
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    first, second = report["cases"]
    assert first["name"] == "sub-r001s001"
    assert first["dice"] == pytest.approx(2 * 64 / (96 + 64))
    assert first["jaccard"] == pytest.approx(64 / 96)
    assert first["precision"] == pytest.approx(64 / 96) and first["recall"] == 1.0
    assert second["dice"] == 1.0
    assert report["mean"]["dice"] == pytest.approx((0.8 + 1.0) / 2)


def test_table_and_single_png_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = np.zeros((8, 8), np.uint8)
    t[:4] = 255  # a 0/255 binary mask counts as 0/1
    p = np.zeros((8, 8), np.uint8)
    p[:2] = 1
    iio.imwrite(tmp_path / "t.png", t)
    iio.imwrite(tmp_path / "p.png", p)
    assert main(["evaluate", "--pred", str(tmp_path / "p.png"), "--truth", str(tmp_path / "t.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["case", "dice", "jaccard", "precision", "recall"]
    assert lines[-1].split() == ["mean", "0.6667", "0.5000", "1.0000", "0.5000"]


def test_mismatches_are_one_line(folders, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, truth = folders
    _nii(pred / "sub-r001s002.nii.gz", np.zeros((10, 10, 5)))
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"error: {pred / 'sub-r001s002.nii.gz'}: prediction shape (10, 10, 5) differs from truth "
        + ("sub-r001s002.nii.gz (10, 10, 4)")
    )
    shifted = PHANTOM_AFFINE.copy()
    shifted[0, 3] += 5
    _nii(pred / "sub-r001s002.nii.gz", np.zeros((10, 10, 4)), shifted)
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth)]) == 2
    assert "prediction affine differs from truth" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--pred", str(empty), "--truth", str(truth)]) == 2
    assert "no label files" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    _nii(other / "zzz.nii.gz", np.zeros((10, 10, 4)))
    assert main(["evaluate", "--pred", str(other), "--truth", str(truth)]) == 2
    assert "no prediction matches a truth file by name" in capsys.readouterr().err


def test_field_of_view_masks_ignore_outside_pixels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RITE style: ``NN_test.png`` predictions and truths, ``NN_test_mask.gif`` fields of view."""
    for sub in ("pred", "truth", "mask"):
        (tmp_path / sub).mkdir()
    truth = np.zeros((16, 16), np.uint8)
    truth[4:12, 6:8] = 1
    pred = truth.copy()
    pred[0:2, :] = 1  # wrong, but outside the field of view
    fov = np.zeros((16, 16), np.uint8)
    fov[3:13, 3:13] = 255
    iio.imwrite(tmp_path / "truth" / "01_test.png", truth)
    iio.imwrite(tmp_path / "pred" / "01_test.png", pred)
    iio.imwrite(tmp_path / "mask" / "01_test_mask.gif", fov)
    argv = ["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"), "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["mean"]["precision"] == pytest.approx(16 / (16 + 32))
    assert main([*argv, "--mask", str(tmp_path / "mask")]) == 0
    assert json.loads(capsys.readouterr().out)["mean"]["dice"] == 1.0
    (tmp_path / "mask" / "01_test_mask.gif").rename(tmp_path / "mask" / "other.gif")
    assert main([*argv, "--mask", str(tmp_path / "mask")]) == 2
    assert "no valid mask for case '01_test'" in capsys.readouterr().err


# --------------------------------------------------------------------------- --protocol

# (protocol, prediction, truth as distributed, metric, value counted by hand)
PROTOCOL_CASES = [
    ("camvid", [[0, 1, 1], [1, 2, 0]], [[0, 0, 1], [1, 2, 11]], "global_accuracy", 4 / 5),  # 11 = void
    ("sunrgbd", [[6, 1, 2], [37, 36, 1]], [[0, 1, 2], [37, 37, 0]], "global_accuracy", 3 / 4),  # 0 ignored
    ("mfn", [[0, 1, 1], [2, 8, 0]], [[0, 0, 1], [2, 8, 8]], "miou", (1 / 3 + 1 / 2 + 1 + 1 / 2) / 4),
    ("ade20k", [[8, 1], [2, 149]], [[0, 1], [2, 150]], "miou", 2 / 150),  # absent classes score 0
    ("skyscapes", [[1, 20], [4, 5]], [[1, 20], [0, 6]], "global_accuracy", 2 / 3),  # 0 ignored
    ("tlcgis", [[0, 255, 255], [0, 0, 255]], [[0, 0, 255], [0, 255, 255]], "iou", 2 / 4),  # road = 0
]


@pytest.mark.parametrize(("protocol", "pred", "truth", "metric", "expected"), PROTOCOL_CASES)
def test_protocols_on_png_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], protocol, pred, truth, metric, expected
) -> None:
    for sub, arr in (("pred", pred), ("truth", truth)):
        (tmp_path / sub).mkdir()
        iio.imwrite(tmp_path / sub / "frame_0001.png", np.asarray(arr, np.uint8))
    argv = [
        "evaluate",
        "--protocol",
        protocol,
        "--pred",
        str(tmp_path / "pred"),
        "--truth",
        str(tmp_path / "truth"),
    ]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["protocol"] == protocol and report["n_cases"] == 1
    assert report["metrics"][metric] == pytest.approx(expected)
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"protocol {protocol}: ")
    assert [line.split()[0] for line in lines[2:]] == list(report["metrics"])


def test_protocol_atlas_and_rite(folders, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, truth = folders
    assert (
        main(["evaluate", "--protocol", "atlas", "--pred", str(pred), "--truth", str(truth), "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["metrics"]["dice"] == pytest.approx((0.8 + 1.0) / 2)
    rite = tmp_path / "rite"
    for sub in ("pred", "truth", "mask"):
        (rite / sub).mkdir(parents=True)
    t = np.zeros((16, 16), np.uint8)
    t[4:12, 6:8] = 255
    p = (t > 0).astype(np.uint8)
    p[0:2, :] = 1  # outside the field of view
    fov = np.zeros((16, 16), np.uint8)
    fov[3:13, 3:13] = 255
    iio.imwrite(rite / "truth" / "01_test.png", t)
    iio.imwrite(rite / "pred" / "01_test.png", p)
    iio.imwrite(rite / "mask" / "01_test_mask.gif", fov)
    argv = ["evaluate", "--protocol", "rite", "--pred", str(rite / "pred"), "--truth", str(rite / "truth")]
    assert main(argv) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("protocol 'rite' needs --mask (valid pixels, e.g. fields of view)")
    )
    assert main([*argv, "--mask", str(rite / "mask"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == {"dice": 1.0, "jaccard": 1.0}


def test_protocol_counting_and_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from segnet_domains.synthetic.layouts import write_annotation

    (tmp_path / "pred").mkdir()
    (tmp_path / "Test").mkdir()
    write_annotation(tmp_path / "Test" / "img_0001_ann.mat", np.ones((7, 2)))
    (tmp_path / "pred" / "img_0001.txt").write_text("10\n")
    argv = [
        "evaluate",
        "--protocol",
        "counting",
        "--pred",
        str(tmp_path / "pred"),
        "--truth",
        str(tmp_path / "Test"),
    ]
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == {"mae": 3.0, "rmse": 3.0, "mse": 9.0}
    assert main([*argv, "--pred-encoding", "model", "--json"]) == 0  # counts have no label encoding
    capsys.readouterr()
    assert main([*argv, "--classes", "3"]) == 2
    assert "--classes and --include-background do not apply with --protocol" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: an unknown protocol is a usage error
        main(["evaluate", "--protocol", "pascal", "--pred", "a", "--truth", "b"])
