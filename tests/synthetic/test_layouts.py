"""The synthetic-data writers produce the real layouts: the readers of each data set find and decode them."""

from __future__ import annotations

import re
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import rasterio

from segnet_domains.counting.annotations import read_head_points
from segnet_domains.counting.task import find_samples as find_crowd_samples
from segnet_domains.geo.dataset import find_pairs, load_sample
from segnet_domains.medical import atlas, rite
from segnet_domains.medical.atlas_r12 import find_r12_subjects
from segnet_domains.synthetic import aerial, brain, layouts
from segnet_domains.synthetic.counting import crowd_image

PACKAGE = Path(layouts.__file__).parent


def test_generators_write_real_layouts(tmp_path: Path) -> None:
    ((img, msk),) = layouts.atlas_t1w(tmp_path / "a", subjects=1, voxel_mm=4.0)
    assert img.name == "sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz"
    assert msk.name == "sub-r001s001_ses-1_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz"
    vol, lesion = nib.load(img), np.asarray(nib.load(msk).dataobj)
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S") and lesion.sum() > 0
    assert set(np.unique(lesion)) == {0, 1}
    shape, affine = brain.mni_grid(1.0)
    assert shape == (197, 233, 189) and affine[0, 3] == -98

    paths = layouts.rite_fundus(tmp_path / "r", train=1, test=0)
    rgb = iio.imread(paths["training"][0])
    assert rgb.shape == (584, 565, 3) and rgb.dtype == np.uint8
    assert (tmp_path / "r" / "training" / "mask" / "21_training_mask.gif").exists()

    ((scene, label),) = layouts.landsat_pairs(tmp_path / "s", scenes=1, size=(96, 128))
    with rasterio.open(scene) as src:
        assert src.count == 4 and src.dtypes[0] == "uint16" and src.nodata == 0
        assert src.crs.to_epsg() == 32633 and src.res == (30.0, 30.0)
        assert (src.read(1) == 0).any()  # a nodata border
    with rasterio.open(label) as lab:
        assert lab.nodata == aerial.IGNORE and lab.transform == src.transform


def test_atlas_phantoms_are_found_by_the_atlas_reader(tmp_path: Path) -> None:
    written = layouts.atlas_phantoms(tmp_path, subjects=4, unlabeled=1, seed=3)
    subjects = atlas.find_subjects(tmp_path)
    assert [(s.image, s.mask) for s in subjects] == written
    assert [s.name for s in subjects] == [f"sub-r{1 + i // 3:03d}s{1 + i:03d}" for i in range(5)]
    assert subjects[-1].mask is None and all(s.mask is not None for s in subjects[:-1])
    for s in subjects[:-1]:
        atlas.check_pair(s)
        mask = np.asarray(nib.load(s.mask).dataobj)
        assert mask.shape == brain.PHANTOM_SHAPE and 0 < mask.sum() < mask.size // 10
        assert int(nib.load(s.image).header["sform_code"]) == 4


def test_atlas_r12_subject_is_found_with_every_mask(tmp_path: Path) -> None:
    vol, mask = brain.phantom_brain(np.random.default_rng(0), (20, 24, 16), lesions=2)
    half = np.zeros_like(mask)
    half[:10] = mask[:10]
    folder = layouts.write_atlas_r12_subject(
        tmp_path, "c0001", "c0001s0004t01", vol, [half, mask - half], np.eye(4)
    )
    (subject,) = find_r12_subjects(tmp_path)
    assert subject.image.parent == folder and subject.name == "c0001s0004t01"
    assert sorted(m.name for m in subject.masks) == [
        "c0001s0004t01_LesionSmooth_1_stx.nii.gz",
        "c0001s0004t01_LesionSmooth_stx.nii.gz",
    ]


def test_rite_miniature_decodes_to_every_class(tmp_path: Path) -> None:
    layouts.rite_miniature(tmp_path, train=2, test=1, size=(40, 44))
    samples = {split: rite.find_samples(tmp_path, split) for split in ("training", "test")}
    assert [s.name for s in samples["training"]] == ["21_training", "22_training"]
    assert [s.name for s in samples["test"]] == ["01_test"]
    pair = rite.load_pair(samples["training"][0], vessels=False)
    assert pair.image.shape == (40, 44, 3) and pair.fov.any() and not pair.fov.all()
    assert {0, 1, 2, rite.UNKNOWN} <= set(np.unique(pair.labels).tolist())


def test_landsat_pairs_load_as_aerial_training_samples(tmp_path: Path) -> None:
    layouts.landsat_pairs(tmp_path, scenes=2, size=(64, 80), seed=4)
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["scene_01", "scene_02"]
    s = load_sample(pairs[0])
    assert s.image.shape == (4, 64, 80) and s.band_names == aerial.BAND_NAMES
    assert (s.label[~s.valid] == aerial.IGNORE).all() and (~s.valid).any()
    assert set(np.unique(s.label[s.valid]).tolist()) <= set(range(len(aerial.CLASS_NAMES)))
    with rasterio.open(pairs[0].label) as lab:
        assert lab.colormap(1)[2][:3] == tuple(aerial.CLASS_COLORS[2])


def test_ucf_qnrf_points_read_back_zero_based(tmp_path: Path) -> None:
    layouts.write_ucf_qnrf(tmp_path, train=2, test=1, seed=5)
    train = find_crowd_samples(tmp_path, "Train")
    assert [s.image.name for s in train] == ["img_0001.jpg", "img_0002.jpg"]
    _, points = crowd_image(np.random.default_rng(5), (72, 96), 9)
    np.testing.assert_allclose(read_head_points(train[0].annotation), points - 1)
    assert iio.imread(find_crowd_samples(tmp_path, "Test")[0].image).ndim == 2  # the grey one


def test_generators_repeat_for_a_seed() -> None:
    for make in (
        lambda s: brain.t1w_brain(np.random.default_rng(s), (30, 34, 28)),
        lambda s: brain.flair_head((24, 28, 20), lesions=2, seed=s),
        lambda s: brain.phantom_brain(np.random.default_rng(s)),
        lambda s: aerial.landsat_scene(np.random.default_rng(s), (48, 40)),
        lambda s: aerial.rgb_scene(48, seed=s),
    ):
        a, b, c = make(1), make(1), make(2)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert not np.array_equal(a[0], c[0])


def test_no_file_name_pattern_is_spelled_in_the_package() -> None:
    """The writers take names from the readers' declarations, never their own literals."""
    patterns = r"_T1w|T1lesion|ses-1|LesionSmooth|_stx|_mask\.gif|\.png\"|_ann\.mat|img_\{|/images|/av/"
    for source in PACKAGE.glob("*.py"):
        text = re.sub(r'"""[\s\S]*?"""|#.*', "", source.read_text())  # code, not prose
        assert not re.search(patterns, text), f"{source.name} spells a layout's file name"
