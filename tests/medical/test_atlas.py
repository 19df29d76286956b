"""ATLAS R2.0 layout: pairing by walking the BIDS tree, bad pairs, corrupt files, 2.5D samples."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segnet_domains.errors import InputError
from segnet_domains.medical.atlas import AtlasLesionTask, find_subjects, mask_path_for, split_subjects
from segnet_domains.synthetic.brain import PHANTOM_AFFINE
from segnet_domains.synthetic.layouts import atlas_phantoms
from segnet_domains.training import build_config
from segnet_domains.training.state import seed_epoch

CONFIGS = Path(__file__).resolve().parents[2] / "pipelines" / "configs"


@pytest.fixture
def atlas(tmp_path: Path) -> Path:
    atlas_phantoms(tmp_path / "atlas", subjects=3, unlabeled=1)
    return tmp_path / "atlas"


def _task(root: Path, *overrides: str) -> AtlasLesionTask:
    return AtlasLesionTask(build_config(CONFIGS / "atlas_lesion.yaml", list(overrides), data_root=root))


def test_pairs_found_by_walking_the_tree(atlas: Path) -> None:
    subjects = find_subjects(atlas)
    assert [s.name for s in subjects] == ["sub-r001s001", "sub-r001s002", "sub-r001s003", "sub-r002s004"]
    assert all(s.mask is not None for s in subjects[:3]) and subjects[3].mask is None
    assert (
        subjects[0].mask.name
        == "sub-r001s001_ses-1_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz"
    )
    assert mask_path_for(subjects[0].image) == subjects[0].mask
    train, val = split_subjects(subjects[:3], 0.2)
    assert len(train) == 2 and len(val) == 1


def test_unlabeled_volume_is_reported_and_inference_only(atlas: Path) -> None:
    task = _task(atlas)
    with pytest.warns(UserWarning, match="without a lesion mask, used for inference only: sub-r002s004"):
        train, val, unlabeled = task.subjects()
    assert [s.name for s in unlabeled] == ["sub-r002s004"]
    cases = list(task.val_cases())
    assert [c.name for c in cases] == ["sub-r001s003", "sub-r002s004"]
    assert cases[0].label is not None and cases[1].label is None and cases[0].volume


def test_2p5d_samples_have_context_channels_and_centre_label(atlas: Path) -> None:
    task = _task(atlas, "data.context=2", "data.samples_per_volume=3", "data.augment=false")
    assert task.metadata()["in_channels"] == 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = task.train_dataset()
    seed_epoch(ds, 0, 0)  # as the engine does: the crops below are the same on every run
    samples = ds[0]
    assert len(samples) == 3
    vol = np.asarray(nib.load(task.subjects()[0][0].image).dataobj)
    for s in samples:
        assert s["image"].shape == (5, 32, 40) and s["label"].shape == (1, 32, 40)
        # the centre channel is an axial slice of the volume (percentile-normalised): find which one
        centre = s["image"][2].numpy()
        corr = [np.corrcoef(centre.ravel(), vol[:, :, z].ravel())[0, 1] for z in range(vol.shape[2])]
        z = int(np.argmax(corr))
        assert corr[z] > 0.999
        mask = np.asarray(nib.load(task.subjects()[0][0].mask).dataobj)
        assert np.array_equal(s["label"][0].numpy(), mask[:, :, z])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_positive_samples_are_centred_on_the_lesion(atlas: Path, seed: int) -> None:
    """With ``pos_fraction=1`` every crop is centred on a lesion voxel, so every centre slice holds lesion.

    (At the default 0.5 each crop flips a coin, so a lesion-free set of samples is a legitimate draw.)
    """
    task = _task(atlas, "data.samples_per_volume=4", "data.augment=false", "data.pos_fraction=1.0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = task.train_dataset()
    seed_epoch(ds, seed, 0)
    assert all(int(s["label"].sum()) > 0 for i in range(len(ds)) for s in ds[i])


def _rewrite(path: Path, data: np.ndarray | None = None, affine: np.ndarray | None = None) -> None:
    img = nib.load(path)
    arr = np.asarray(img.dataobj) if data is None else data
    nib.save(nib.Nifti1Image(arr, img.affine if affine is None else affine), path)


def test_shape_mismatch_names_the_mask(atlas: Path) -> None:
    s = find_subjects(atlas)[0]
    _rewrite(s.mask, data=np.zeros((32, 40, 20), np.uint8))
    with pytest.raises(InputError, match=r"lesion_mask\.nii\.gz: mask shape \(32, 40, 20\) does not match"):
        _task(atlas).subjects()


def test_affine_mismatch_names_the_mask(atlas: Path) -> None:
    s = find_subjects(atlas)[1]
    flipped = PHANTOM_AFFINE.copy()
    flipped[0, 0] = -1
    _rewrite(s.mask, affine=flipped)
    with pytest.raises(InputError, match=r"s002.*lesion_mask\.nii\.gz: mask affine differs"):
        _task(atlas).subjects()


def test_mask_values_outside_classes(atlas: Path) -> None:
    s = find_subjects(atlas)[0]
    data = np.asarray(nib.load(s.mask).dataobj).copy()
    data[0, 0, 0] = 3
    _rewrite(s.mask, data=data)
    task = _task(atlas)
    with (
        pytest.raises(
            InputError, match=r"lesion_mask\.nii\.gz: mask has values 3 outside the declared classes"
        ),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        task.train_dataset()


def test_corrupt_volume_is_named_or_skipped(atlas: Path) -> None:
    s = find_subjects(atlas)[0]
    s.image.write_bytes(s.image.read_bytes()[:400])  # truncated gzip: the header reads, the data don't
    with (
        pytest.raises(InputError, match=r"s001_ses-1_space-MNI152NLin2009aSym_T1w\.nii\.gz: "),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        _task(atlas).train_dataset()
    task = _task(atlas, "data.skip_corrupt=true")
    with pytest.warns(UserWarning, match=r"s001.*skipped \(data.skip_corrupt is true\)"):
        ds = task.train_dataset()
    assert len(ds) == 1  # two train subjects, the corrupt one dropped


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no ATLAS T1w volumes found"):
        find_subjects(tmp_path)
    only_unlabeled = tmp_path / "u"
    atlas_phantoms(only_unlabeled, subjects=0, unlabeled=1)
    with pytest.raises(InputError, match="no T1w volume with a lesion mask"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _task(only_unlabeled).subjects()


def test_reoriented_pair_still_pairs(atlas: Path, tmp_path: Path) -> None:
    """A subject stored as LPS (image and mask alike) is a valid pair; MONAI reorients it to RAS."""
    s = find_subjects(atlas)[0]
    for path in (s.image, s.mask):
        img = nib.load(path)
        lps = img.as_reoriented(np.array([[0, -1], [1, -1], [2, 1]]))
        nib.save(lps, path)
    copy = tmp_path / "copy"
    shutil.copytree(atlas, copy)
    task = _task(copy, "data.augment=false", "data.samples_per_volume=2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(task.subjects()[0]) == 2
        sample = task.train_dataset()[0][0]
    assert sample["image"].shape == (1, 32, 40)  # RAS slice shape, same as the unflipped subjects
