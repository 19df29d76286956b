"""``segnet-domains demo --quick``: every domain end to end, outputs in the real formats, a summary."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import rasterio

from segnet_domains.cli import main
from segnet_domains.demo import aerial, fundus, mri


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_summary_has_every_domain(demo_out: Path) -> None:
    summary = json.loads((demo_out / "summary.json").read_text())
    for key, metric in (("mri", "dice"), ("fundus", "dice"), ("aerial", "miou")):
        assert 0.0 <= summary[key][metric] <= 1.0
        assert Path(summary[key]["output"]).exists()
        assert Path(summary[key]["checkpoint"]).exists()
    assert summary["quick"] is True and summary["seconds"]["total"] > 0


def test_mri_mask_aligned_with_input(demo_out: Path) -> None:
    summary = json.loads((demo_out / "summary.json").read_text())
    mask = nib.load(summary["mri"]["output"])
    src = next((demo_out / "data" / "atlas_heldout").rglob("*_T1w.nii.gz"))
    image = nib.load(src)
    assert mask.shape == image.shape
    np.testing.assert_array_equal(mask.affine, image.affine)
    assert int(mask.header["sform_code"]) == 4


def test_fundus_labels_png(demo_out: Path) -> None:
    summary = json.loads((demo_out / "summary.json").read_text())
    labels = iio.imread(summary["fundus"]["output"])
    assert labels.shape == (fundus.HEIGHT, fundus.WIDTH) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1}


def test_aerial_cog_keeps_georeference(demo_out: Path) -> None:
    summary = json.loads((demo_out / "summary.json").read_text())
    src = next((demo_out / "data" / "aerial_heldout" / "images").glob("*.tif"))
    with rasterio.open(summary["aerial"]["output"]) as out, rasterio.open(src) as scene:
        assert (out.width, out.height) == (scene.width, scene.height)
        assert out.crs == scene.crs and out.transform == scene.transform
        assert out.dtypes[0] == "uint8"


@pytest.mark.parametrize("domain", ["mri", "fundus", "aerial"])
def test_overlay_pictures(demo_out: Path, domain: str) -> None:
    picture = iio.imread(demo_out / domain / "overlay.png")
    assert picture.ndim == 3 and picture.shape[-1] == 3
    assert picture.shape[1] == 3 * (picture.shape[1] // 3)  # image | truth | prediction
    assert picture.std() > 10  # not blank


def test_generators_write_real_layouts(tmp_path: Path) -> None:
    ((img, msk),) = mri.write_atlas(tmp_path / "a", subjects=1, voxel_mm=4.0)
    assert img.name == "sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz"
    assert msk.name == "sub-r001s001_ses-1_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz"
    vol, lesion = nib.load(img), np.asarray(nib.load(msk).dataobj)
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S") and lesion.sum() > 0
    assert set(np.unique(lesion)) == {0, 1}
    shape, affine = mri.mni_grid(1.0)
    assert shape == (197, 233, 189) and affine[0, 3] == -98

    paths = fundus.write_rite(tmp_path / "r", train=1, test=0)
    rgb = iio.imread(paths["training"][0])
    assert rgb.shape == (584, 565, 3) and rgb.dtype == np.uint8
    assert (tmp_path / "r" / "training" / "mask" / "21_training_mask.gif").exists()

    ((scene, label),) = aerial.write_aerial(tmp_path / "s", scenes=1, size=(96, 128))
    with rasterio.open(scene) as src:
        assert src.count == 4 and src.dtypes[0] == "uint16" and src.nodata == 0
        assert src.crs.to_epsg() == 32633 and src.res == (30.0, 30.0)
        assert (src.read(1) == 0).any()  # a nodata border
    with rasterio.open(label) as lab:
        assert lab.nodata == aerial.IGNORE and lab.transform == src.transform
