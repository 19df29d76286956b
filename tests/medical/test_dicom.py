"""DICOM series in: sorting, the oblique RAS affine, rescale, series choice, codecs and broken series."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, JPEG2000Lossless, JPEGLSLossless, RLELossless

from segnet_domains.errors import InputError
from segnet_domains.medical.dicom import DicomVolume, find_series, read_dicom_series
from segnet_domains.medical.volumes import read_any_volume
from tests.data.dicom import block_volume, oblique_affine, write_series

SHAPE = (10, 12, 6)  # columns, rows, slices
LEVELS = (60.0, 100.0, 300.0, 340.0)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return block_volume(SHAPE, LEVELS, seed=1) + np.arange(SHAPE[2], dtype=np.float32) * 0.5


def _flip_k(affine: np.ndarray, n: int) -> np.ndarray:
    """The affine of the same voxels with the slice axis reversed."""
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1.0, n - 1
    return affine @ flip


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_oblique_series_affine_and_voxels(tmp_path: Path, volume: np.ndarray, shuffle: bool) -> None:
    affine = oblique_affine()
    write_series(tmp_path, volume, affine, shuffle=shuffle)
    vol = read_dicom_series(tmp_path)
    assert isinstance(vol, DicomVolume)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(vol.data, volume)  # rescale applied: stored int16 * 0.5 - 20
    assert vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.spacing, (0.8, 0.95, 2.5), atol=1e-5)  # the measured slice spacing
    assert int(vol.image.header["qform_code"]) == 1 and int(vol.image.header["sform_code"]) == 1
    # the files come back in slice order whatever their names
    z = [float(np.dot(ds.ImagePositionPatient, np.cross(*np.reshape(ds.ImageOrientationPatient, (2, 3)))))
         for ds in vol.datasets]  # fmt: skip
    assert z == sorted(z) and len(vol.files) == SHAPE[2]


def test_slices_against_the_normal_are_sorted_along_it(tmp_path: Path, volume: np.ndarray) -> None:
    """A stack stored against row × column direction comes back reversed, with the matching affine."""
    affine = oblique_affine(flip_slices=True)
    assert np.linalg.det(affine[:3, :3]) < 0
    write_series(tmp_path, volume, affine)
    vol = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(vol.data, volume[:, :, ::-1])
    np.testing.assert_allclose(vol.affine, _flip_k(affine, SHAPE[2]), atol=1e-4)
    # the same world positions either way
    ijk = np.array([3, 7, 1, 1.0])
    np.testing.assert_allclose(vol.affine @ ijk, affine @ [3, 7, SHAPE[2] - 2, 1.0], atol=1e-4)


def test_affine_agrees_with_highdicom(tmp_path: Path, volume: np.ndarray) -> None:
    """highdicom's own volume of the series (slices, rows, columns; against the normal) is the same grid."""
    files = write_series(tmp_path, volume, oblique_affine(), shuffle=True)
    ref = hd.get_volume_from_series([pydicom.dcmread(f) for f in files], dtype=np.float32)
    ours = read_dicom_series(tmp_path)
    # highdicom index (s, r, c) is our (i=c, j=r, k=K-1-s)
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[3, 3] = 1.0
    perm[2, 0], perm[2, 3] = -1.0, SHAPE[2] - 1
    np.testing.assert_allclose(ref.get_affine("RAS"), ours.affine @ perm, atol=1e-4)
    np.testing.assert_array_equal(ref.array, ours.data.transpose(2, 1, 0)[::-1])


def test_one_file_reads_its_series_and_several_series_are_listed(tmp_path: Path, volume: np.ndarray) -> None:
    flair = write_series(tmp_path, volume, oblique_affine(), description="FLAIR ax", prefix="A")
    t1 = write_series(tmp_path, volume + 40, oblique_affine(degrees=(0, 5, 0)), description="T1 sag",
                      prefix="B", shuffle=True)  # fmt: skip
    (tmp_path / "README.txt").write_text("not DICOM: skipped")
    uid_flair, uid_t1 = (str(pydicom.dcmread(f[0]).SeriesInstanceUID) for f in (flair, t1))
    assert set(find_series(tmp_path)) == {uid_flair, uid_t1}
    with pytest.raises(InputError) as err:
        read_dicom_series(tmp_path)
    line = str(err.value)
    assert "\n" not in line and "holds 2 DICOM series" in line and "--series" in line
    assert uid_flair in line and uid_t1 in line and "'FLAIR ax'" in line and "'T1 sag'" in line
    vol = read_dicom_series(t1[3])  # one file: its own series
    assert vol.series_uid == uid_t1 and vol.description == "T1 sag"
    np.testing.assert_array_equal(vol.data, volume + 40)
    vol = read_any_volume(tmp_path, series_uid=uid_flair)
    np.testing.assert_array_equal(vol.data, volume)
    np.testing.assert_allclose(vol.affine, oblique_affine(), atol=1e-4)
    with pytest.raises(InputError, match=r"no image series 1\.2\.3 here; found: .*FLAIR ax"):
        read_dicom_series(tmp_path, "1.2.3")


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=lambda s: s.name)
def test_compressed_series(tmp_path: Path, syntax) -> None:
    if syntax == JPEG2000Lossless:
        pytest.importorskip("openjpeg", reason="JPEG 2000 encoding for the test needs pylibjpeg-openjpeg")
    data = block_volume((32, 34, 4), LEVELS, seed=2)  # openjpeg needs edges of 32+
    files = write_series(tmp_path, data, oblique_affine(), transfer_syntax=syntax)
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == syntax
    vol = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, oblique_affine(), atol=1e-4)


def _edit(path: Path, **attrs) -> None:
    ds = pydicom.dcmread(path)
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.save_as(path)


def _missing(files: list[Path]) -> Path:
    files[2].unlink()
    return files[3]


def _uneven(files: list[Path]) -> Path:
    ds = pydicom.dcmread(files[3])
    normal = np.cross(*np.reshape(ds.ImageOrientationPatient, (2, 3)))
    _edit(files[3], ImagePositionPatient=[float(v) for v in np.add(ds.ImagePositionPatient, 0.9 * normal)])
    return files[3]


def _tilted(files: list[Path]) -> Path:
    position = pydicom.dcmread(files[4]).ImagePositionPatient
    _edit(files[4], ImagePositionPatient=[float(v) + 0.7 for v in position])
    return files[4]


def _duplicate(files: list[Path]) -> Path:
    _edit(files[4], ImagePositionPatient=pydicom.dcmread(files[3]).ImagePositionPatient)
    return files[4]


def _orientation(files: list[Path]) -> Path:
    _edit(files[1], ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    return files[1]


def _size(files: list[Path]) -> Path:
    ds = pydicom.dcmread(files[5])
    ds.Rows = SHAPE[1] - 2
    ds.PixelData = ds.PixelData[: (SHAPE[1] - 2) * SHAPE[0] * 2]
    ds.save_as(files[5])
    return files[5]


def _no_pixels(files: list[Path]) -> Path:
    ds = pydicom.dcmread(files[2])
    del ds.PixelData
    ds.save_as(files[2])
    return files[2]


def _truncated_pixels(files: list[Path]) -> Path:
    files[2].write_bytes(files[2].read_bytes()[:-40])
    return files[2]


def _truncated_header(files: list[Path]) -> Path:
    files[2].write_bytes(files[2].read_bytes()[:320])
    return files[2]


def _junk_dcm(files: list[Path]) -> Path:
    junk = files[0].with_name("notes.dcm")
    junk.write_text("exported by hand")
    return junk


def _undecodable(files: list[Path]) -> Path:
    ds = pydicom.dcmread(files[1])
    ds.PixelData = encapsulate([bytes(64)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.save_as(files[1])
    return files[1]


BROKEN = {
    "missing slice": (_missing, "1 slice(s) missing between"),
    "uneven spacing": (_uneven, "uneven slice spacing"),
    "off the axis": (_tilted, "off the stack's axis"),
    "duplicate": (_duplicate, "duplicate slice"),
    "orientation": (_orientation, "orientation [1, 0, 0, 0, 1, 0] differs"),
    "size": (_size, "slice is 10×10 pixels, the series' others are 12×10"),
    "no pixel data": (_no_pixels, "no pixel data"),
    "truncated pixels": (_truncated_pixels, "truncated or unreadable pixel data"),
    "truncated header": (_truncated_header, "truncated or incomplete DICOM header"),
    "junk .dcm": (_junk_dcm, "not a DICOM file"),
    "no decoder": (_undecodable, "compressed as MPEG2 Main Profile / Main Level, which no installed decoder"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_series_one_line_naming_the_file(tmp_path: Path, volume: np.ndarray, case: str) -> None:
    files = write_series(tmp_path, volume, oblique_affine())
    breaker, expected = BROKEN[case]
    culprit = breaker(files)
    with pytest.raises(InputError) as err:
        read_dicom_series(tmp_path)
    assert err.value.path == str(culprit), str(err.value)
    assert expected in err.value.problem and "\n" not in str(err.value)


def test_not_a_series(tmp_path: Path, volume: np.ndarray) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing here")
    with pytest.raises(InputError, match="no DICOM image series in this folder"):
        read_dicom_series(tmp_path / "empty")
    one = write_series(tmp_path / "one", volume[:, :, :1], oblique_affine())
    with pytest.raises(InputError, match="single slice"):
        read_dicom_series(one[0])
    with pytest.raises(InputError, match="not found"):
        read_any_volume(tmp_path / "missing")
    with pytest.raises(InputError, match="not a volume"):
        read_any_volume(tmp_path / "empty" / "notes.txt")
