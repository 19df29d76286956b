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
from segnet_domains.synthetic import fundus


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
