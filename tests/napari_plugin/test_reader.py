"""Readers: NIfTI (RAS view, spacing as scale, geometry in metadata), GeoTIFF (bands, CRS, lazy pyramid)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import psutil
import pydicom
import pytest
from rasterio.transform import Affine

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
    assert geo["transform"] == Affine(0.5, 0.0, 500123.25, 0.0, -0.5, 4650987.75)
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


# --------------------------------------------------------------------------- DICOM


def test_dicom_folder_opens_like_the_same_nifti(tmp_path: Path) -> None:
    """An oblique DICOM series gives the layer the NIfTI of the same voxels and affine gives."""
    from napari_plugin._reader import get_dicom_reader, read_dicom
    from tests.data.dicom import block_volume, oblique_affine, write_series

    data = block_volume((12, 10, 8), (60.0, 100.0, 300.0, 340.0), seed=3)
    files = write_series(tmp_path / "series", data, oblique_affine(), shuffle=True, description="FLAIR ax")
    nib.save(nib.Nifti1Image(data, oblique_affine()), tmp_path / "same.nii.gz")
    assert get_dicom_reader(str(tmp_path / "series")) is read_dicom
    ((dicom, dkw, kind),) = get_dicom_reader(str(tmp_path / "series"))(str(tmp_path / "series"))
    ((nifti, nkw, _),) = read_nifti(str(tmp_path / "same.nii.gz"))
    assert kind == "image" and dkw["name"] == "FLAIR ax"
    np.testing.assert_array_equal(dicom, nifti)
    np.testing.assert_allclose(dkw["scale"], nkw["scale"], atol=1e-5)
    np.testing.assert_allclose(dkw["translate"], nkw["translate"], atol=1e-4)
    d, n = dkw["metadata"]["nifti"], nkw["metadata"]["nifti"]
    np.testing.assert_allclose(d["ras_affine"], n["ras_affine"], atol=1e-4)
    np.testing.assert_allclose(d["affine"], oblique_affine(), atol=1e-4)
    assert d["stored_shape"] == n["stored_shape"] == [12, 10, 8]
    assert d["stored_axcodes"] == n["stored_axcodes"]
    series = dkw["metadata"]["dicom"]
    assert series["series_uid"] == str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    assert series["files"] == [os.path.abspath(f) for f in files]  # in slice order
    # one file of the series opens the series
    ((one, _, _),) = get_dicom_reader(str(files[5]))(str(files[5]))
    np.testing.assert_array_equal(one, nifti)


def test_dicom_folder_with_two_series_opens_two_layers(tmp_path: Path) -> None:
    from napari_plugin._reader import read_dicom
    from tests.data.dicom import block_volume, oblique_affine, write_series

    data = block_volume((8, 6, 4), (60.0, 300.0), seed=1)
    write_series(tmp_path, data, oblique_affine(), description="FLAIR", prefix="A")
    write_series(tmp_path, data + 20, oblique_affine(), description="T2", prefix="B")
    layers = read_dicom(str(tmp_path))
    assert sorted(kw["metadata"]["dicom"]["description"] for _, kw, _ in layers) == ["FLAIR", "T2"]
    means = {kw["metadata"]["dicom"]["description"]: float(arr.mean()) for arr, kw, _ in layers}
    assert means["T2"] == pytest.approx(means["FLAIR"] + 20)


def test_dicom_reader_declines_other_paths(tmp_path: Path, mri, scene) -> None:
    from napari_plugin._reader import get_dicom_reader

    (tmp_path / "notes.txt").write_text("no DICOM here")
    assert get_dicom_reader(str(tmp_path)) is None
    assert get_dicom_reader(str(tmp_path / "notes.txt")) is None
    assert get_dicom_reader(str(mri[0])) is None
    assert get_dicom_reader(str(scene[0])) is None
    assert get_dicom_reader(str(tmp_path / "missing")) is None


def test_npe2_routes_a_series_folder_and_a_slice_to_the_dicom_reader(tmp_path: Path) -> None:
    """Through the manifest (directories accepted, files without a suffix too), as napari opens them."""
    from npe2 import PluginManager, io_utils

    from tests.data.dicom import block_volume, oblique_affine, write_series

    PluginManager.instance().discover()
    files = write_series(tmp_path / "series", block_volume((8, 6, 4), (60.0, 300.0)), oblique_affine())
    bare = files[1].rename(tmp_path / "series" / "1.3.12.2.1107.5.2")  # scanners often write no suffix
    for path in (tmp_path / "series", bare):
        layers, reader = io_utils.read_get_reader(str(path), plugin_name="segnet-domains")
        assert reader.command == "segnet-domains.get_dicom_reader"
        ((data, kwargs, kind),) = layers
        assert kind == "image" and data.shape == (8, 6, 4)  # oblique_affine's axes are near R, A, S
        assert kwargs["metadata"]["dicom"]["description"] == "FLAIR oblique"
