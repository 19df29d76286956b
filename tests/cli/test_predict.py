"""``info``, ``predict-image``, ``predict-volume`` end to end, and every bad input of issue 2."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import tifffile

from segnet_domains.cli import main
from segnet_domains.io.atomic import temporary_path
from segnet_domains.synthetic.scenes import blob_scene
from tests.data.dicom import save_threshold_checkpoint


@pytest.fixture(scope="module")
def threshold_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SegNet whose label is ``intensity > 130`` on 2×2-block-constant slices, by construction."""
    path = tmp_path_factory.mktemp("threshold") / "threshold.pt"
    return save_threshold_checkpoint(path, (130.0,), ["background", "lesion"])


def _mni_affine() -> np.ndarray:
    return np.array([[1.0, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]])


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    img = nib.Nifti1Image(data, _mni_affine() if affine is None else affine)
    img.header.set_qform(img.affine, code=1)
    img.header.set_sform(img.affine, code=4)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_info_prints_json(tiny_checkpoint, capsys) -> None:
    ckpt = tiny_checkpoint(3, 2, class_names=["bg", "vessel"], domain="fundus")
    code, out, _ = _run(["info", str(ckpt)], capsys)
    meta = json.loads(out)
    assert code == 0 and meta["class_names"] == ["bg", "vessel"] and meta["domain"] == "fundus"
    assert meta["format"] == "segnet-domains/1" and meta["in_channels"] == 3


def test_predict_image_png_with_overlay(trained_checkpoint, tmp_path, capsys) -> None:
    img, mask = blob_scene(np.random.default_rng(1), 70, 90)
    grey = np.clip(img[0], 0, 255).astype(np.uint8)
    iio.imwrite(tmp_path / "scan.png", grey)
    argv = ["predict-image", str(tmp_path / "scan.png"), "--model", str(trained_checkpoint)]
    argv += ["--out", str(tmp_path / "labels.png"), "--overlay", str(tmp_path / "overlay.png")]
    code, out, _ = _run(argv, capsys)
    assert code == 0 and "labels.png" in out
    labels = iio.imread(tmp_path / "labels.png")
    assert labels.shape == (70, 90) and labels.dtype == np.uint8
    dice = 2 * ((labels == 1) & (mask == 1)).sum() / ((labels == 1).sum() + mask.sum())
    assert dice > 0.85
    ov = iio.imread(tmp_path / "overlay.png")
    assert ov.shape == (70, 90, 3)
    # blob pixels are tinted with the class colour (red-ish), background stays grey
    assert ov[labels == 1][:, 0].mean() > ov[labels == 1][:, 2].mean() + 40
    bg = ov[labels == 0]
    assert np.abs(bg[:, 0].astype(int) - bg[:, 2]).max() == 0


@pytest.mark.parametrize("layout", ["hwc", "chw"])
def test_predict_image_multiband_tiff(tiny_checkpoint, tmp_path, capsys, layout) -> None:
    ckpt = tiny_checkpoint(4, 3)
    data = np.random.default_rng(0).integers(0, 4000, (4, 33, 47), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "scene.tif", np.moveaxis(data, 0, -1) if layout == "hwc" else data)
    code, _, _ = _run(["predict-image", str(tmp_path / "scene.tif"), "-m", str(ckpt),
                       "--out", str(tmp_path / "out.tif")], capsys)  # fmt: skip
    assert code == 0
    assert tifffile.imread(tmp_path / "out.tif").shape == (33, 47)


@pytest.mark.parametrize(
    "axcodes_affine",
    [
        _mni_affine(),  # RAS
        np.array([[-1.0, 0, 0, 98], [0, -1, 0, 134], [0, 0, 1, -72], [0, 0, 0, 1]]),  # LPS
        np.array([[0, 0, 1.0, -72], [1, 0, 0, -98], [0, -1, 0, 134], [0, 0, 0, 1]]),  # permuted + flipped
    ],
    ids=["RAS", "LPS", "SRP-permuted"],
)
def test_predict_volume_keeps_geometry(threshold_checkpoint, tmp_path, capsys, axcodes_affine) -> None:
    """Shape, affine, header and the voxels' places survive every stored orientation.

    The model labels ``intensity > 130`` exactly on 2×2×2-block volumes
    (:func:`tests.data.dicom.threshold_segnet`), so the answer is known voxel
    for voxel and the test is about geometry, not about a trained model.
    """
    rng = np.random.default_rng(0)
    coarse = rng.uniform(85, 115, (10, 12, 9)).astype(np.float32)
    coarse[2:6, 3:7, :] += 60  # a bright block: voxels [4:12, 6:14, :]
    data = np.kron(coarse, np.ones((2, 2, 2), np.float32))
    src = _nifti(tmp_path / "t1w.nii.gz", data, axcodes_affine)
    out = tmp_path / "mask.nii.gz"
    code, _, err = _run(["predict-volume", str(src), "--model", str(threshold_checkpoint), "--out", str(out)],
                        capsys)  # fmt: skip
    assert code == 0, err
    ref, mask = nib.load(src), nib.load(out)
    assert mask.shape == ref.shape
    np.testing.assert_array_equal(mask.affine, ref.affine)
    assert int(mask.header["qform_code"]) == 1 and int(mask.header["sform_code"]) == 4
    np.testing.assert_array_equal(mask.header.get_zooms(), ref.header.get_zooms())
    labels = np.asarray(mask.dataobj)
    assert labels.dtype == np.uint8
    assert labels[5:12, 6:14, :].mean() > 0.8 and labels[14:, 16:, :].mean() < 0.1
    np.testing.assert_array_equal(labels, (data > 130).astype(np.uint8))


def test_predict_volume_orientation_invariance(trained_checkpoint, tmp_path, capsys) -> None:
    """The same anatomy stored as RAS and as LPS gives the same mask in world space."""
    rng = np.random.default_rng(2)
    ras = rng.normal(100, 10, (20, 22, 16)).astype(np.float32)
    ras[3:9, 10:18, 4:12] += 60
    aff = _mni_affine()
    lps_data = ras[::-1, ::-1, :].copy()
    flip = np.diag([-1.0, -1, 1, 1])
    flip[:3, 3] = [19, 21, 0]
    lps_aff = aff @ flip
    a = _nifti(tmp_path / "ras.nii.gz", ras, aff)
    b = _nifti(tmp_path / "lps.nii.gz", lps_data, lps_aff)
    assert nib.aff2axcodes(lps_aff) == ("L", "P", "S")
    for src in (a, b):
        assert _run(["predict-volume", str(src), "-m", str(trained_checkpoint), "--out",
                     str(tmp_path / f"m_{src.name}"), "--axis", "2"], capsys)[0] == 0  # fmt: skip
    ma = np.asarray(nib.load(tmp_path / "m_ras.nii.gz").dataobj)
    mb = np.asarray(nib.load(tmp_path / "m_lps.nii.gz").dataobj)
    np.testing.assert_array_equal(ma, mb[::-1, ::-1, :])


# ----------------------------------------------------------------------------- bad input


def _bad(argv: list[str], capsys, *expect: str, outputs: tuple[Path, ...] = ()) -> None:
    code, out, err = _run(argv, capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for text in expect:
        assert text in lines[0], lines[0]
    for o in outputs:
        assert not o.exists() and not temporary_path(o).exists()


def test_not_an_image(tiny_checkpoint, tmp_path, capsys) -> None:
    (tmp_path / "notes.png").write_text("not a png")
    out = tmp_path / "o.png"
    _bad(["predict-image", str(tmp_path / "notes.png"), "-m", str(tiny_checkpoint()), "--out", str(out)],
         capsys, "notes.png", "not a readable image", outputs=(out,))  # fmt: skip


def test_not_a_volume(tiny_checkpoint, tmp_path, capsys) -> None:
    (tmp_path / "x.nii.gz").write_bytes(gzip.compress(b"garbage" * 100))
    out = tmp_path / "o.nii.gz"
    _bad(["predict-volume", str(tmp_path / "x.nii.gz"), "-m", str(tiny_checkpoint()), "--out", str(out)],
         capsys, "x.nii.gz", "not a readable NIfTI", outputs=(out,))  # fmt: skip


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_nifti(tiny_checkpoint, tmp_path, capsys, suffix) -> None:
    full = _nifti(tmp_path / f"full{suffix}", np.random.rand(20, 20, 20).astype(np.float32))
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    out = tmp_path / "o.nii.gz"
    _bad(["predict-volume", str(cut), "-m", str(tiny_checkpoint()), "--out", str(out)],
         capsys, f"cut{suffix}", outputs=(out,))  # fmt: skip


def test_4d_volume(tiny_checkpoint, tmp_path, capsys) -> None:
    src = _nifti(tmp_path / "dwi.nii.gz", np.random.rand(10, 10, 10, 3).astype(np.float32))
    out = tmp_path / "o.nii.gz"
    _bad(["predict-volume", str(src), "-m", str(tiny_checkpoint()), "--out", str(out)],
         capsys, "dwi.nii.gz", "expected a 3D volume, got 4D", outputs=(out,))  # fmt: skip


def test_channel_mismatch_names_both_counts(tiny_checkpoint, tmp_path, capsys) -> None:
    iio.imwrite(tmp_path / "rgb.png", np.zeros((20, 20, 3), np.uint8))
    out = tmp_path / "o.png"
    _bad(["predict-image", str(tmp_path / "rgb.png"), "-m", str(tiny_checkpoint(4, 2)), "--out", str(out)],
         capsys, "rgb.png", "3 channels", "expects 4", outputs=(out,))  # fmt: skip


@pytest.mark.parametrize("kind", ["image", "volume"])
def test_nan_inf(tiny_checkpoint, tmp_path, capsys, kind) -> None:
    if kind == "image":
        arr = np.ones((16, 16), np.float32)
        arr[2, 2] = np.nan
        src, out, cmd = tmp_path / "nan.tif", tmp_path / "o.png", "predict-image"
        tifffile.imwrite(src, arr)
    else:
        arr = np.ones((8, 8, 8), np.float32)
        arr[1, 1, 1] = np.inf
        src, out, cmd = _nifti(tmp_path / "inf.nii.gz", arr), tmp_path / "o.nii.gz", "predict-volume"
    _bad([cmd, str(src), "-m", str(tiny_checkpoint()), "--out", str(out)], capsys, src.name, "NaN/Inf",
         outputs=(out,))  # fmt: skip


@pytest.mark.parametrize("shape", [(1, 1), (0, 5)])
def test_empty_or_one_pixel_image(tiny_checkpoint, tmp_path, capsys, shape) -> None:
    src = tmp_path / "tiny.tif"
    tifffile.imwrite(src, np.ones(shape, np.uint8))
    out = tmp_path / "o.png"
    _bad(["predict-image", str(src), "-m", str(tiny_checkpoint()), "--out", str(out)], capsys, "tiny.tif",
         outputs=(out,))  # fmt: skip


@pytest.mark.parametrize("problem", ["missing", "corrupt", "pickle"])
def test_missing_or_corrupt_checkpoint(tiny_checkpoint, tmp_path, capsys, problem) -> None:
    import torch

    iio.imwrite(tmp_path / "img.png", np.zeros((20, 20), np.uint8))
    ckpt = tmp_path / "model.pt"
    if problem == "corrupt":
        ckpt.write_bytes(tiny_checkpoint().read_bytes()[:5000])
    elif problem == "pickle":
        torch.save({"state_dict": {}}, ckpt)
    out = tmp_path / "o.png"
    expect = {"missing": "not found", "corrupt": "corrupt", "pickle": "pickle payload"}[problem]
    _bad(["predict-image", str(tmp_path / "img.png"), "-m", str(ckpt), "--out", str(out)], capsys,
         "model.pt", expect, outputs=(out,))  # fmt: skip


def test_unwritable_output_folder(tiny_checkpoint, tmp_path, capsys) -> None:
    iio.imwrite(tmp_path / "img.png", np.zeros((20, 20), np.uint8))
    _bad(["predict-image", str(tmp_path / "img.png"), "-m", str(tiny_checkpoint()),
          "--out", str(tmp_path / "no" / "such" / "o.png")], capsys, "does not exist")  # fmt: skip


def test_console_script_error_has_no_traceback(tmp_path) -> None:
    """The installed entry point: one line on stderr, exit 2."""
    (tmp_path / "x.png").write_text("nope")
    proc = subprocess.run(
        [sys.executable, "-m", "segnet_domains", "predict-image", str(tmp_path / "x.png"),
         "--model", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o.png")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.pt'}: checkpoint not found"]


def test_help_lists_commands() -> None:
    proc = subprocess.run([sys.executable, "-m", "segnet_domains", "--help"], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0
    for cmd in ("info", "predict-image", "predict-volume"):
        assert cmd in proc.stdout
