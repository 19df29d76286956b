"""``predict-volume`` on DICOM series: the same voxels as the NIfTI route, DICOM SEG out, one-line errors.

The model is :func:`tests.data.dicom.threshold_segnet`: its label is
``(intensity > 200) + (intensity > 320)`` on the 2×2×2-block volumes used
here, known by construction, so every check below is about IO and geometry, not about a
model's quality.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.orientations import apply_orientation, inv_ornt_aff

from segnet_domains import Segmenter
from segnet_domains.cli import main
from segnet_domains.io.atomic import temporary_path
from tests.data.dicom import block_volume, oblique_affine, save_threshold_checkpoint, write_series

THRESHOLDS = (200.0, 320.0)
LEVELS = (60.0, 100.0, 300.0, 340.0)
SHAPE = (16, 14, 10)  # columns, rows, slices (even: the threshold model's blocks)
CLASSES = ["background", "bright lesion", "very bright lesion"]


def expected(data: np.ndarray) -> np.ndarray:
    """What the threshold model labels, by construction."""
    return (data > THRESHOLDS[0]).astype(np.uint8) + (data > THRESHOLDS[1])


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_threshold_checkpoint(tmp_path_factory.mktemp("model") / "thr.pt", THRESHOLDS, CLASSES)


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, list[Path]]:
    """``(folder, volume, files in slice order)``: an oblique series, files named out of order."""
    data = block_volume(SHAPE, LEVELS, seed=4)
    folder = tmp_path_factory.mktemp("series") / "FLAIR"
    files = write_series(folder, data, oblique_affine(), shuffle=True)
    return folder, data, files


def _predict(src: Path, model: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["predict-volume", str(src), "-m", str(model), "--out", str(out), "--precision", "fp32",
                 "--device", "cpu", *extra])  # fmt: skip
    return code, capsys.readouterr().err


def test_threshold_model_is_exact_on_every_axis(model: Path) -> None:
    """The premise of this file: the labels are known voxel for voxel, for any slicing axis."""
    data = block_volume(SHAPE, LEVELS, seed=9)
    seg = Segmenter.from_checkpoint(model, device="cpu", precision="fp32")
    truth = expected(data)
    assert set(np.unique(truth)) == {0, 1, 2}
    for axis in (0, 1, 2):
        np.testing.assert_array_equal(seg.predict_volume(data, axis=axis), truth)


def test_dicom_and_nifti_routes_label_the_same_voxels(scan, model: Path, tmp_path: Path, capsys) -> None:
    folder, data, _ = scan
    code, err = _predict(folder, model, tmp_path / "from_dicom.nii.gz", capsys)
    assert code == 0, err
    mask_d = nib.load(tmp_path / "from_dicom.nii.gz")
    np.testing.assert_allclose(mask_d.affine, oblique_affine(), atol=1e-4)
    labels_d = np.asarray(mask_d.dataobj)
    np.testing.assert_array_equal(labels_d, expected(data))
    assert 0.2 < (labels_d > 0).mean() < 0.8

    # the same anatomy as NIfTI, stored with permuted and flipped axes
    ornt = np.array([[2, -1], [0, 1], [1, -1]])
    nifti = tmp_path / "same.nii.gz"
    moved = oblique_affine() @ inv_ornt_aff(ornt, SHAPE)
    nib.save(nib.Nifti1Image(apply_orientation(data, ornt), moved), nifti)
    code, err = _predict(nifti, model, tmp_path / "from_nifti.nii.gz", capsys)
    assert code == 0, err
    mask_n = nib.load(tmp_path / "from_nifti.nii.gz")
    labels_n = np.asarray(mask_n.dataobj)
    assert labels_n.shape != labels_d.shape  # a real comparison through world space follows
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1).reshape(-1, 3)
    world = nib.affines.apply_affine(mask_d.affine, ijk)
    there = nib.affines.apply_affine(np.linalg.inv(mask_n.affine), world)
    idx = np.rint(there).astype(int)
    np.testing.assert_allclose(there, idx, atol=1e-3)
    np.testing.assert_array_equal(labels_n[tuple(idx.T)], labels_d[tuple(ijk.T)])


def _frames_to_volume(ds: pydicom.Dataset, sources: dict[str, int], binary: bool) -> np.ndarray:
    """Rebuild ``I×J×K`` labels from a SEG with pydicom only, each frame placed by the slice it references."""
    labels = np.zeros(SHAPE, np.uint8)
    pixels = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    shared = ds.SharedFunctionalGroupsSequence[0]
    for frame, group in zip(pixels, ds.PerFrameFunctionalGroupsSequence, strict=True):
        k = sources[group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        if binary:  # one frame per slice and segment, 0/1 (the segment per frame, or shared by all)
            ident = group.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
            labels[:, :, k][frame.T > 0] = ident[0].ReferencedSegmentNumber
        else:  # one frame per slice, the segment number as value
            labels[:, :, k] = frame.T
    return labels


@pytest.mark.parametrize("seg_type", ["binary", "labelmap"])
def test_dicom_seg_references_the_series_and_lands_on_its_voxels(
    scan, model: Path, tmp_path: Path, capsys, seg_type: str
) -> None:
    folder, data, files = scan
    out = tmp_path / "mask.dcm"
    code, err = _predict(files[3], model, out, capsys, "--seg-type", seg_type)  # one file names the series
    assert code == 0, err
    src = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    seg = hd.seg.segread(out)
    assert seg.SegmentationType == seg_type.upper()
    assert seg.StudyInstanceUID == src[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == src[0].FrameOfReferenceUID
    assert seg.SeriesInstanceUID != src[0].SeriesInstanceUID
    (ref_series,) = seg.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == src[0].SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in ref_series.ReferencedInstanceSequence} == {
        s.SOPInstanceUID for s in src
    }
    # segments: the checkpoint's class names (a labelmap also describes its background as segment 0);
    # algorithm: the checkpoint's provenance
    labels = {s.SegmentNumber: s.SegmentLabel for s in seg.SegmentSequence}
    assert labels == ({0: "Background"} if seg_type == "labelmap" else {}) | {1: CLASSES[1], 2: CLASSES[2]}
    algo = seg.SegmentSequence[-1].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "SegNet threshold" and algo.AlgorithmVersion.startswith("segnet-domains")
    assert algo.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    # geometry: the source's orientation and spacing; each frame at its source slice's position
    shared = seg.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose(shared.PlaneOrientationSequence[0].ImageOrientationPatient,
                               src[0].ImageOrientationPatient, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(shared.PixelMeasuresSequence[0].PixelSpacing, src[0].PixelSpacing, atol=1e-6)
    sources = {s.SOPInstanceUID: k for k, s in enumerate(src)}
    for group in seg.PerFrameFunctionalGroupsSequence:
        k = sources[group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        np.testing.assert_allclose(group.PlanePositionSequence[0].ImagePositionPatient,
                                   src[k].ImagePositionPatient, atol=1e-4)  # fmt: skip
    # the frames put the mask on the voxels the model labelled
    truth = expected(data)
    rebuilt = _frames_to_volume(pydicom.dcmread(out), sources, seg_type == "binary")
    np.testing.assert_array_equal(rebuilt, truth)
    # and highdicom's own reading agrees, slice by slice
    uids = [s.SOPInstanceUID for s in src]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2], combine_segments=True)
    np.testing.assert_array_equal(pixels.transpose(2, 1, 0), truth)


def test_several_series_refused_then_chosen(scan, model: Path, tmp_path: Path, capsys) -> None:
    _, data, _ = scan
    folder = tmp_path / "study"
    write_series(folder, data, oblique_affine(), description="FLAIR", prefix="A")
    other = write_series(folder, 400.0 - data, oblique_affine((0, 0, 90)), description="T1", prefix="B")
    uid = str(pydicom.dcmread(other[0]).SeriesInstanceUID)
    out = tmp_path / "m.nii.gz"
    code, err = _predict(folder, model, out, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert "holds 2 DICOM series" in lines[0] and uid in lines[0] and "'T1'" in lines[0]
    assert not out.exists()
    code, err = _predict(folder, model, out, capsys, "--series", uid)
    assert code == 0, err
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), expected(400.0 - data))


def _one_line_error(code: int, err: str, *expect: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for text in expect:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize("suffix", [".nii.gz", ".dcm"])
def test_broken_series_exit_2_and_no_output(scan, model: Path, tmp_path: Path, capsys, suffix: str) -> None:
    _, data, _ = scan
    files = write_series(tmp_path / "broken", data, oblique_affine())
    files[4].unlink()
    out = tmp_path / f"mask{suffix}"
    code, err = _predict(tmp_path / "broken", model, out, capsys)
    _one_line_error(code, err, str(files[5]), "1 slice(s) missing")
    assert not out.exists() and not temporary_path(out).exists()


def test_dicom_seg_needs_a_dicom_input(scan, tmp_path: Path, capsys) -> None:
    """Refused before the model is even loaded (the checkpoint here does not exist)."""
    nifti = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(scan[1], oblique_affine()), nifti)
    out = tmp_path / "mask.dcm"
    code, err = _predict(nifti, tmp_path / "absent.pt", out, capsys)
    _one_line_error(code, err, "mask.dcm", "DICOM SEG output needs a DICOM series")
    assert not out.exists()


def test_series_option_is_for_dicom(scan, model: Path, tmp_path: Path, capsys) -> None:
    nifti = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(scan[1], oblique_affine()), nifti)
    code, err = _predict(nifti, model, tmp_path / "m.nii.gz", capsys, "--series", "1.2.3")
    _one_line_error(code, err, "vol.nii.gz", "--series applies to DICOM input only")
