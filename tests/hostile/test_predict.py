"""Hostile inputs for ``predict-image`` and ``predict-volume``: outputs that would eat inputs, bad files."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import tifffile

from tests.hostile.conftest import Assets, Table, check_case, fifo, nifti, png, rewrite_header, run_main

CPU = ["--device", "cpu"]
IMAGE, VOLUME = Table(), Table()


def _img(w: Path, a: Assets, *extra: str, name: str = "in.png") -> list[str]:
    src = w / name
    if not src.exists() and not src.is_symlink():
        png(src)
    return ["predict-image", str(src), "--model", str(a.ckpt1), *CPU, *extra]


def _vol(w: Path, a: Assets, *extra: str, name: str = "in.nii.gz") -> list[str]:
    src = w / name
    if not src.exists() and not src.is_symlink():
        nifti(src)
    return ["predict-volume", str(src), "--model", str(a.ckpt1), *CPU, *extra]


def _text(path: Path, text: str = "not what you think") -> Path:
    path.write_text(text)
    return path


def _claiming_nii(path: Path, shape: tuple[int, int, int], gz: bool) -> Path:
    """A NIfTI header claiming ``shape`` int16 voxels, with 4 KB of data behind it."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.int16)
    hdr.set_qform(np.eye(4), code=1)
    raw = hdr.binaryblock + b"\0" * 4 + b"\0" * 4096
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def _png_bomb(path: Path) -> Path:
    """A PNG whose header claims 100000×100000 grey pixels, with a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b""))
    return path


def _tiff_claiming(path: Path) -> Path:
    """An uncompressed TIFF cut after its header: it claims 3000×3000 uint16 pixels."""
    tifffile.imwrite(path, np.zeros((3000, 3000), np.uint16))
    path.write_bytes(path.read_bytes()[:4096])
    return path


def _five_classes(path: Path, a: Assets) -> Path:
    """The 2-class checkpoint's weights under a header that says 5 classes (consistent with itself)."""

    def five(info: dict) -> None:
        info["out_channels"] = info["args"]["out_channels"] = 5
        info["class_names"] = ["bg", "a", "b", "c", "d"]
        info["class_colors"] = [[0, 0, 0]] * 5

    return rewrite_header(a.ckpt1, path, five)


def _rgba(path: Path) -> Path:
    iio.imwrite(path, np.full((30, 30, 4), 120, np.uint8))
    return path


def _nan_tif(path: Path) -> Path:
    arr = np.ones((32, 32), np.float32)
    arr[3, 4] = np.nan
    tifffile.imwrite(path, arr)
    return path


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


# ----------------------------------------------------------------------------- predict-image: outputs


@IMAGE.case()
def out_is_input(w, a):
    return _img(w, a, "--out", str(w / "in.png")), ["in.png", "is also an input"]


@IMAGE.case()
def out_is_input_force(w, a):
    return _img(w, a, "--out", str(w / "in.png"), "--force"), ["in.png", "is also an input"]


@IMAGE.case()
def out_is_checkpoint(w, a):
    return _img(w, a, "--out", str(a.ckpt1), "--force"), ["m1.pt", "is also an input"]


@IMAGE.case()
def overlay_is_input(w, a):
    return _img(w, a, "--out", str(w / "o.png"), "--overlay", str(w / "in.png")), [
        "in.png",
        "is also an input",
    ]


@IMAGE.case()
def overlay_is_out(w, a):
    return _img(w, a, "--out", str(w / "o.png"), "--overlay", str(w / "o.png")), ["--overlay and --out"]


@IMAGE.case()
def out_is_folder(w, a):
    return _img(w, a, "--out", str(_dir(w / "d.png"))), ["d.png", "is a folder"]


@IMAGE.case()
def out_is_folder_force(w, a):
    return _img(w, a, "--out", str(_dir(w / "d.png")), "--force"), ["d.png", "is a folder"]


@IMAGE.case()
def out_exists(w, a):
    return _img(w, a, "--out", str(png(w / "o.png"))), ["o.png", "exists; add --force"]


@IMAGE.case()
def out_foreign_force(w, a):
    return _img(w, a, "--out", str(_text(w / "o.png")), "--force"), ["o.png", "is not a label image"]


@IMAGE.case()
def overlay_exists(w, a):
    return _img(w, a, "--out", str(w / "o.png"), "--overlay", str(png(w / "v.png"))), ["v.png", "--force"]


@IMAGE.case()
def overlay_foreign_force(w, a):
    argv = _img(w, a, "--out", str(w / "o.png"), "--overlay", str(_text(w / "v.jpg")), "--force")
    return argv, ["v.jpg", "is not an overlay picture"]


@IMAGE.case()
def out_jpg(w, a):
    return _img(w, a, "--out", str(w / "o.jpg")), ["o.jpg", "lossy"]


@IMAGE.case()
def out_jpeg(w, a):
    return _img(w, a, "--out", str(w / "o.JPEG")), ["o.JPEG", "lossy"]


@IMAGE.case()
def out_webp(w, a):
    return _img(w, a, "--out", str(w / "o.webp")), ["o.webp", "lossy"]


@IMAGE.case()
def out_xyz(w, a):
    return _img(w, a, "--out", str(w / "o.xyz")), ["o.xyz", "unknown format .xyz"]


@IMAGE.case()
def out_no_extension(w, a):
    return _img(w, a, "--out", str(w / "labels")), ["labels", "unknown format (no extension)"]


@IMAGE.case()
def out_nifti_name(w, a):
    return _img(w, a, "--out", str(w / "o.nii.gz")), ["o.nii.gz", "unknown format .nii.gz"]


@IMAGE.case()
def overlay_xyz(w, a):
    return _img(w, a, "--out", str(w / "o.png"), "--overlay", str(w / "v.xyz")), ["v.xyz", "unknown format"]


@IMAGE.case()
def out_missing_folder(w, a):
    return _img(w, a, "--out", str(w / "no" / "o.png")), ["o.png", "does not exist"]


@IMAGE.case()
def out_under_a_file(w, a):
    return _img(w, a, "--out", str(_text(w / "f") / "o.png")), ["o.png", "is not a folder"]


@IMAGE.case()
def out_fifo(w, a):
    return _img(w, a, "--out", str(fifo(w / "o.png")), "--force"), ["o.png", "FIFO"]


@IMAGE.case()
def out_dev_null(w, a):
    return _img(w, a, "--out", "/dev/null"), ["/dev/null", "unknown format"]


# ----------------------------------------------------------------------------- predict-image: inputs


@IMAGE.case()
def image_missing(w, a):
    return ["predict-image", str(w / "nope.png"), "-m", str(a.ckpt1), "--out", str(w / "o.png")], ["nope.png"]


@IMAGE.case()
def image_folder(w, a):
    _dir(w / "x.png")
    return _img(w, a, "--out", str(w / "o.png"), name="x.png"), ["x.png", "is a folder"]


@IMAGE.case()
def image_fifo(w, a):
    fifo(w / "p.png")
    return _img(w, a, "--out", str(w / "o.png"), name="p.png"), ["p.png", "FIFO"]


@IMAGE.case()
def image_device(w, a):
    return ["predict-image", "/dev/zero", "-m", str(a.ckpt1), "--out", str(w / "o.png")], [
        "/dev/zero",
        "device",
    ]


@IMAGE.case()
def image_text(w, a):
    _text(w / "t.png")
    return _img(w, a, "--out", str(w / "o.png"), name="t.png"), ["t.png", "not a readable image"]


@IMAGE.case()
def image_empty(w, a):
    _text(w / "e.png", "")
    return _img(w, a, "--out", str(w / "o.png"), name="e.png"), ["e.png"]


@IMAGE.case()
def image_truncated_png(w, a):
    (w / "c.png").write_bytes(png(w / "full.png").read_bytes()[:60])
    return _img(w, a, "--out", str(w / "o.png"), name="c.png"), ["c.png"]


@IMAGE.case()
def image_png_bomb(w, a):
    _png_bomb(w / "b.png")
    return _img(w, a, "--out", str(w / "o.png"), name="b.png"), ["b.png", "100000×100000"]


@IMAGE.case()
def image_tiff_claims_more(w, a):
    _tiff_claiming(w / "c.tif")
    return _img(w, a, "--out", str(w / "o.png"), name="c.tif"), ["c.tif", "truncated", "3000×3000"]


@IMAGE.case()
def image_rgba_vs_1_band(w, a):
    _rgba(w / "rgba.png")
    return _img(w, a, "--out", str(w / "o.png"), name="rgba.png"), ["rgba.png", "has 4 channels"]


@IMAGE.case()
def image_nan(w, a):
    _nan_tif(w / "n.tif")
    return _img(w, a, "--out", str(w / "o.png"), name="n.tif"), ["n.tif", "NaN"]


@IMAGE.case()
def image_1x1(w, a):
    png(w / "one.png", (1, 1))
    return _img(w, a, "--out", str(w / "o.png"), name="one.png"), ["one.png"]


@IMAGE.case()
def image_4d_tiff(w, a):
    tifffile.imwrite(w / "v.tif", np.zeros((5, 6, 7, 8), np.uint8))
    return _img(w, a, "--out", str(w / "o.png"), name="v.tif"), ["v.tif"]


# ----------------------------------------------------------------------------- predict-image: options, model


@IMAGE.case()
def batch_size_0(w, a):
    return _img(w, a, "--out", str(w / "o.png"), "--batch-size", "0"), ["--batch-size", "[1, 4096]"]


@IMAGE.case()
def batch_size_negative(w, a):
    return _img(w, a, "--out", str(w / "o.png"), "--batch-size", "-3"), ["--batch-size"]


@IMAGE.case()
def batch_size_huge(w, a):
    return _img(w, a, "--out", str(w / "o.png"), "--batch-size", "1000000000"), ["--batch-size"]


@IMAGE.case()
def batch_size_text(w, a):
    return _img(w, a, "--out", str(w / "o.png"), "--batch-size", "many"), ["--batch-size", "'many'"]


@IMAGE.case()
def precision_bogus(w, a):
    return _img(w, a, "--out", str(w / "o.png"), "--precision", "fp8"), ["--precision"]


@IMAGE.case()
def device_bogus(w, a):
    return _img(w, a, "--out", str(w / "o.png"), "--device", "tpu"), ["'tpu'"]


@IMAGE.case()
def no_out(w, a):
    return _img(w, a), ["--out"]


@IMAGE.case()
def ckpt_five_names_two_weights(w, a):
    argv = _img(w, a, "--out", str(w / "o.png"), "-m", str(_five_classes(w / "five.pt", a)))
    return argv, ["five.pt", "5 classes", "the file holds"]


@IMAGE.case()
def ckpt_is_an_image(w, a):
    return _img(w, a, "--out", str(w / "o.png"), "-m", str(png(w / "m.png"))), ["m.png", "checkpoint"]


@IMAGE.case()
def ckpt_fifo(w, a):
    return _img(w, a, "--out", str(w / "o.png"), "-m", str(fifo(w / "m.pt"))), ["m.pt", "FIFO"]


@IMAGE.case(code=0, creates=("o.png",))
def force_replaces_our_png(w, a):
    return _img(w, a, "--out", str(png(w / "o.png")), "--force"), []


@IMAGE.case(code=0, creates=("o.tif", "v.jpg"))
def overlay_as_jpeg(w, a):
    return _img(w, a, "--out", str(w / "o.tif"), "--overlay", str(w / "v.jpg")), []


@IMAGE.case(code=0, creates=("o.png",))
def rgba_on_an_rgb_model(w, a):
    _rgba(w / "rgba.png")
    return _img(w, a, "--out", str(w / "o.png"), "-m", str(a.ckpt3), name="rgba.png"), []


# ----------------------------------------------------------------------------- predict-volume


@VOLUME.case()
def vol_out_is_input(w, a):
    return _vol(w, a, "--out", str(w / "in.nii.gz")), ["in.nii.gz", "is also an input"]


@VOLUME.case()
def vol_out_is_input_force(w, a):
    return _vol(w, a, "--out", str(w / "in.nii.gz"), "--force"), ["in.nii.gz", "is also an input"]


@VOLUME.case()
def vol_out_is_input_via_symlink(w, a):
    argv = _vol(w, a)
    (w / "ln.nii.gz").symlink_to(w / "in.nii.gz")
    return [*argv, "--out", str(w / "ln.nii.gz"), "--force"], ["ln.nii.gz", "is also an input"]


@VOLUME.case()
def vol_out_is_input_dotted(w, a):
    _dir(w / "sub")
    return _vol(w, a, "--out", str(w / "." / "sub" / ".." / "in.nii.gz")), ["is also an input"]


@VOLUME.case()
def vol_out_is_checkpoint(w, a):
    return _vol(w, a, "--out", str(a.ckpt1), "--force"), ["m1.pt", "is also an input"]


@VOLUME.case()
def vol_out_exists(w, a):
    return _vol(w, a, "--out", str(nifti(w / "o.nii.gz"))), ["o.nii.gz", "--force"]


@VOLUME.case()
def vol_out_foreign_force(w, a):
    return _vol(w, a, "--out", str(_text(w / "o.nii.gz")), "--force"), ["o.nii.gz", "is not a NIfTI mask"]


@VOLUME.case()
def vol_out_folder(w, a):
    return _vol(w, a, "--out", str(_dir(w / "o.nii.gz"))), ["o.nii.gz", "is a folder"]


@VOLUME.case()
def vol_out_png(w, a):
    return _vol(w, a, "--out", str(w / "o.png")), ["o.png", "unknown format .png"]


@VOLUME.case()
def vol_out_xyz(w, a):
    return _vol(w, a, "--out", str(w / "o.xyz")), ["o.xyz", "unknown format"]


@VOLUME.case()
def vol_out_gz_only(w, a):
    return _vol(w, a, "--out", str(w / "o.gz")), ["o.gz", "unknown format .gz"]


@VOLUME.case()
def vol_out_missing_folder(w, a):
    return _vol(w, a, "--out", str(w / "x" / "o.nii.gz")), ["o.nii.gz", "does not exist"]


@VOLUME.case()
def vol_out_fifo(w, a):
    return _vol(w, a, "--out", str(fifo(w / "o.nii")), "--force"), ["o.nii", "FIFO"]


@VOLUME.case()
def claims_32000_cubed_nii(w, a):
    _claiming_nii(w / "big.nii", (32000, 32000, 32000), gz=False)
    argv = _vol(w, a, "--out", str(w / "o.nii.gz"), name="big.nii")
    return argv, ["big.nii", "32000×32000×32000", "truncated"]


@VOLUME.case()
def claims_32000_cubed_gz(w, a):
    _claiming_nii(w / "big.nii.gz", (32000, 32000, 32000), gz=True)
    return _vol(w, a, "--out", str(w / "o.nii.gz"), name="big.nii.gz"), ["big.nii.gz", "32000×32000×32000"]


@VOLUME.case()
def claims_more_nii(w, a):
    _claiming_nii(w / "m.nii", (64, 64, 64), gz=False)
    return _vol(w, a, "--out", str(w / "o.nii.gz"), name="m.nii"), ["m.nii", "truncated"]


@VOLUME.case()
def truncated_gz(w, a):
    (w / "cut.nii.gz").write_bytes(nifti(w / "full.nii.gz", (30, 30, 30)).read_bytes()[:2000])
    return _vol(w, a, "--out", str(w / "o.nii.gz"), name="cut.nii.gz"), ["cut.nii.gz"]


@VOLUME.case()
def volume_4d(w, a):
    nifti(w / "d.nii.gz", (6, 6, 6, 3))
    return _vol(w, a, "--out", str(w / "o.nii.gz"), name="d.nii.gz"), ["d.nii.gz", "4D"]


@VOLUME.case()
def volume_2d(w, a):
    nifti(w / "d.nii.gz", (6, 6))
    return _vol(w, a, "--out", str(w / "o.nii.gz"), name="d.nii.gz"), ["d.nii.gz", "2D"]


@VOLUME.case()
def volume_text(w, a):
    _text(w / "t.nii.gz")
    return _vol(w, a, "--out", str(w / "o.nii.gz"), name="t.nii.gz"), ["t.nii.gz"]


@VOLUME.case()
def volume_fifo(w, a):
    fifo(w / "f.nii")
    return _vol(w, a, "--out", str(w / "o.nii.gz"), name="f.nii"), ["f.nii", "FIFO"]


@VOLUME.case()
def volume_folder(w, a):
    _dir(w / "f.nii")
    return _vol(w, a, "--out", str(w / "o.nii.gz"), name="f.nii"), ["f.nii", "is a folder"]


@VOLUME.case()
def volume_missing(w, a):
    return ["predict-volume", str(w / "no.nii"), "-m", str(a.ckpt1), "--out", str(w / "o.nii.gz")], ["no.nii"]


@VOLUME.case()
def axis_5(w, a):
    return _vol(w, a, "--out", str(w / "o.nii.gz"), "--axis", "5"), ["--axis"]


@VOLUME.case()
def vol_batch_size_0(w, a):
    return _vol(w, a, "--out", str(w / "o.nii.gz"), "--batch-size", "0"), ["--batch-size"]


@VOLUME.case(code=0, creates=("o.nii.gz",))
def force_replaces_our_mask(w, a):
    return _vol(w, a, "--out", str(nifti(w / "o.nii.gz")), "--force"), []


def _no_orientation(path: Path, singular_sform: bool) -> Path:
    data = np.random.default_rng(0).normal(100, 10, (10, 12, 8)).astype(np.float32)
    img = nib.Nifti1Image(data, None)
    img.header.set_qform(None, code=0)
    img.header.set_sform(np.zeros((4, 4)) if singular_sform else None, code=2 if singular_sform else 0)
    img.header.set_zooms((2.0, 2.0, 3.0))
    nib.save(img, path)
    return path


@VOLUME.case(code=0, creates=("o.nii.gz",), warns="no orientation")
def no_orientation_warns(w, a):
    _no_orientation(w / "n.nii.gz", False)
    return _vol(w, a, "--out", str(w / "o.nii.gz"), name="n.nii.gz"), []


@VOLUME.case(code=0, creates=("o.nii.gz",), warns="sform is all zeros")
def zero_sform_warns(w, a):
    _no_orientation(w / "z.nii.gz", True)
    return _vol(w, a, "--out", str(w / "o.nii.gz"), name="z.nii.gz"), []


@pytest.mark.parametrize("case", IMAGE, ids=IMAGE.ids)
def test_predict_image(case, tmp_path: Path, assets: Assets, capsys: pytest.CaptureFixture[str]) -> None:
    check_case(case, tmp_path, assets, capsys)


@pytest.mark.parametrize("case", VOLUME, ids=VOLUME.ids)
def test_predict_volume(case, tmp_path: Path, assets: Assets, capsys: pytest.CaptureFixture[str]) -> None:
    check_case(case, tmp_path, assets, capsys)


def test_zero_sform_mask_has_the_input_shape(tmp_path: Path, assets: Assets, capsys) -> None:
    src = _no_orientation(tmp_path / "z.nii.gz", True)
    argv = _vol(tmp_path, assets, "--out", str(tmp_path / "o.nii.gz"), name="z.nii.gz")
    with pytest.warns(UserWarning, match="no orientation"):
        code, _, err = run_main(argv, capsys)
    assert code == 0, err
    assert nib.load(tmp_path / "o.nii.gz").shape == nib.load(src).shape == (10, 12, 8)


def test_overlay_is_a_real_jpeg_and_labels_a_real_tiff(tmp_path: Path, assets: Assets, capsys) -> None:
    """The extension chooses the format: JPEG bytes under .jpg, TIFF bytes under .tif (never PNG bytes)."""
    code, _, err = run_main(_img(tmp_path, assets, "--out", str(tmp_path / "o.tif"), "--overlay",
                                 str(tmp_path / "v.jpg")), capsys)  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "v.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert (tmp_path / "o.tif").read_bytes()[:4] == b"II*\x00"
    assert iio.imread(tmp_path / "v.jpg").shape == (40, 44, 3)
    assert tifffile.imread(tmp_path / "o.tif").shape == (40, 44)
