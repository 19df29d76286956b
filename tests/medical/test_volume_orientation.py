"""predict-volume: masks aligned voxel for voxel whatever the stored orientation (issue 3, point 4)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from segnet_domains import Segmenter
from segnet_domains.cli import main
from segnet_domains.predict_files import predict_volume_file
from segnet_domains.synthetic.brain import PHANTOM_AFFINE, phantom_brain


def _reorient(img: nib.Nifti1Image, codes: tuple[str, str, str]) -> nib.Nifti1Image:
    """The same voxels stored with axis codes ``codes`` (a real reorientation, affine adjusted)."""
    t = ornt_transform(axcodes2ornt(nib.aff2axcodes(img.affine)), axcodes2ornt(codes))
    data = apply_orientation(np.asarray(img.dataobj), t)
    affine = img.affine @ inv_ornt_aff(t, img.shape)
    out = nib.Nifti1Image(data, affine)
    out.set_qform(affine, code=4)
    out.set_sform(affine, code=2)
    return out


@pytest.fixture(scope="module")
def ras_volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vol, _ = phantom_brain(np.random.default_rng(3), (30, 36, 22), lesions=2)
    img = nib.Nifti1Image(vol, PHANTOM_AFFINE)
    img.set_qform(PHANTOM_AFFINE, code=4)
    img.set_sform(PHANTOM_AFFINE, code=4)
    path = tmp_path_factory.mktemp("orient") / "ras.nii.gz"
    nib.save(img, path)
    return path


@pytest.mark.parametrize(
    "codes", [("L", "P", "S"), ("S", "R", "A"), ("R", "A", "I"), ("P", "I", "L"), ("A", "S", "R")]
)
@pytest.mark.numerics
def test_prediction_follows_the_anatomy(
    ras_volume: Path, trained_checkpoint: Path, tmp_path: Path, codes
) -> None:
    # The CLI ran on device "auto" (a GPU where there is one): the reference runs on the same device, so
    # only the orientation differs and the masks must agree voxel for voxel.
    seg = Segmenter.from_checkpoint(trained_checkpoint, device="auto", precision="fp32")
    ref = predict_volume_file(seg, ras_volume, tmp_path / "ref.nii.gz", axis=2, progress=False)
    assert 0 < ref.mean() < 1  # the trained blob model finds something: agreement is not trivial

    src = _reorient(nib.load(ras_volume), codes)
    moved = tmp_path / "moved.nii.gz"
    nib.save(src, moved)
    out = tmp_path / "moved_mask.nii.gz"
    labels = predict_volume_file(seg, moved, out, axis=2, progress=False)

    written = nib.load(out)
    assert written.shape == src.shape and labels.shape == src.shape
    assert np.allclose(written.affine, src.affine)
    assert int(written.header["qform_code"]) == 4 and int(written.header["sform_code"]) == 2
    assert np.allclose(written.get_qform(), src.get_qform()) and np.allclose(
        written.get_sform(), src.get_sform()
    )
    # voxel for voxel: bring the mask back to RAS, it equals the prediction on the RAS volume
    back = _reorient(written, ("R", "A", "S"))
    assert np.allclose(back.affine, PHANTOM_AFFINE)
    assert np.array_equal(np.asarray(back.dataobj), ref)


@pytest.mark.numerics
def test_cli_predict_volume_lps(ras_volume: Path, trained_checkpoint: Path, tmp_path: Path) -> None:
    lps = tmp_path / "lps.nii.gz"
    nib.save(_reorient(nib.load(ras_volume), ("L", "P", "S")), lps)
    out = tmp_path / "lps_mask.nii.gz"
    args = [
        "predict-volume",
        str(lps),
        "--model",
        str(trained_checkpoint),
        "--out",
        str(out),
        "--precision",
        "fp32",
    ]
    assert main(args) == 0
    # The CLI ran on device "auto" (a GPU where there is one): the reference runs on the same device, so
    # only the orientation differs and the masks must agree voxel for voxel.
    seg = Segmenter.from_checkpoint(trained_checkpoint, device="auto", precision="fp32")
    ref = predict_volume_file(seg, ras_volume, tmp_path / "ref.nii.gz", progress=False)
    assert np.array_equal(np.asarray(_reorient(nib.load(out), ("R", "A", "S")).dataobj), ref)
