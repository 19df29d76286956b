"""Readers: NIfTI (RAS view, spacing as scale, geometry in metadata), GeoTIFF (bands, CRS, lazy pyramid)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import psutil
import pytest

from napari_plugin._reader import get_geotiff_reader, get_nifti_reader, read_geotiff, read_nifti
from tests.napari_plugin.data import NON_RAS_AFFINE, write_geotiff


def test_nifti_reader_scale_translate_and_metadata(mri) -> None:
    path, ras_volume, _ = mri
    reader = get_nifti_reader(str(path))
    assert reader is read_nifti
    ((data, kwargs, kind),) = reader(str(path))
    assert kind == "image"
    # shown in RAS order: the generator's RAS array comes back voxel for voxel
    np.testing.assert_allclose(data, ras_volume, rtol=1e-6)
    # stored axes are (P, L, S) with 1.1 / 0.9 / 1.3 mm: in RAS order the spacing is (0.9, 1.1, 1.3)
    np.testing.assert_allclose(kwargs["scale"], (0.9, 1.1, 1.3), rtol=1e-6)
    meta = kwargs["metadata"]["nifti"]
    assert meta["stored_axcodes"] == ["P", "L", "S"]
    np.testing.assert_array_equal(meta["affine"], nib.load(path).affine)
    np.testing.assert_allclose(meta["affine"], NON_RAS_AFFINE, rtol=1e-6)
    assert meta["stored_shape"] == [ras_volume.shape[1], ras_volume.shape[0], ras_volume.shape[2]]
    # the RAS affine maps voxel (0,0,0) of the shown array to the layer's translate
    ras_affine = np.asarray(meta["ras_affine"])
    np.testing.assert_allclose(kwargs["translate"], ras_affine[:3, 3])
    np.testing.assert_allclose(np.abs(np.diag(ras_affine[:3, :3])), (0.9, 1.1, 1.3), rtol=1e-6)
    # the full header travels: description and the qform/sform codes survive
    header = nib.Nifti1Header(binaryblock=meta["header"])
    assert header["descrip"].tobytes().startswith(b"synthetic FLAIR")
    assert int(header["qform_code"]) == 1 and int(header["sform_code"]) == 2


def test_nifti_reader_declines_other_files(tmp_path: Path, scene) -> None:
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    assert get_nifti_reader(str(bad)) is None
    assert get_nifti_reader(str(scene[0])) is None
    assert get_nifti_reader(str(tmp_path / "missing.nii")) is None


def test_geotiff_reader_rgb_bands_crs_transform(scene) -> None:
    path, rgb = scene
    assert get_geotiff_reader(str(path)) is read_geotiff
    ((data, kwargs, kind),) = read_geotiff(str(path))
    assert kind == "image" and kwargs["rgb"] is True and kwargs["multiscale"] is False
    np.testing.assert_array_equal(data, rgb)
    geo = kwargs["metadata"]["geotiff"]
    assert "32633" in geo["crs"] or "UTM zone 33N" in geo["crs"]
    assert geo["transform"] == [0.5, 0.0, 500123.25, 0.0, -0.5, 4650987.75]
    assert geo["count"] == 3 and geo["layout"] == "hwc"
    assert kwargs["scale"] == (0.5, 0.5)


def test_geotiff_reader_multiband_is_channel_first(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).random((5, 40, 30)).astype(np.float32)
    path = write_geotiff(tmp_path / "ms.tif", arr, res=10.0)
    ((data, kwargs, _),) = read_geotiff(str(path))
    assert kwargs["rgb"] is False and kwargs["metadata"]["geotiff"]["layout"] == "chw"
    np.testing.assert_array_equal(data, arr)
    assert kwargs["scale"] == (1.0, 10.0, 10.0)


def test_geotiff_reader_declines_plain_tiff(tmp_path: Path) -> None:
    import tifffile

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((16, 16), np.uint8))
    assert get_geotiff_reader(str(plain)) is None
    assert get_geotiff_reader(str(tmp_path / "x.png")) is None


def test_huge_geotiff_opens_lazily(tmp_path: Path) -> None:
    """A 20000² scene opens as a multiscale dask pyramid without loading its 400 MB."""
    import rasterio
    from rasterio.transform import Affine
    from rasterio.windows import Window

    path = tmp_path / "huge.tif"
    profile = {
        "driver": "GTiff",
        "height": 20000,
        "width": 20000,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": Affine(0.3, 0.0, 500000.0, 0.0, -0.3, 4700000.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "sparse_ok": True,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((1, 512, 512), 200, np.uint8), window=Window(19456, 1024, 512, 512))
    assert path.stat().st_size < 5_000_000
    rss = psutil.Process(os.getpid()).memory_info().rss
    ((levels, kwargs, _),) = read_geotiff(str(path))
    assert kwargs["multiscale"] is True
    assert levels[0].shape == (20000, 20000)
    assert max(levels[-1].shape) <= 1024
    assert [lv.shape[0] for lv in levels[:3]] == [20000, 10000, 5000]
    # one window of the full-resolution level reads just that window
    patch = np.asarray(levels[0][1000:1100, 19400:19500])
    assert patch[50, 80] == 200 and patch[10, 10] == 0
    small = np.asarray(levels[-1])
    assert small.shape == levels[-1].shape
    grown = psutil.Process(os.getpid()).memory_info().rss - rss
    assert grown < 150_000_000, f"memory grew by {grown / 1e6:.0f} MB"


@pytest.mark.parametrize("name", ["a.nii", "b.nii.gz"])
def test_nifti_reader_accepts_both_suffixes(tmp_path: Path, name: str) -> None:
    img = nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.diag([2.0, 3.0, 4.0, 1.0]))
    nib.save(img, tmp_path / name)
    ((data, kwargs, _),) = get_nifti_reader(str(tmp_path / name))(str(tmp_path / name))
    assert data.shape == (2, 3, 4) and kwargs["scale"] == (2.0, 3.0, 4.0)
    assert kwargs["name"] == name.split(".")[0]
