"""Writers: Labels to NIfTI (source affine, header, orientation) and GeoTIFF (source CRS, transform)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import rasterio
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from napari_plugin._reader import read_geotiff, read_nifti
from napari_plugin._writer import write_labels_geotiff, write_labels_nifti
from segnet_domains.errors import InputError
from tests.napari_plugin.data import ensure_plugin_discovered, open_in_viewer


@pytest.fixture(autouse=True)
def _plugins() -> None:
    """Make sure npe2 knows our manifest (napari does this when it starts)."""
    ensure_plugin_discovered()


def test_nifti_labels_round_trip_exact_geometry(mri, tmp_path: Path) -> None:
    path, _, ras_mask = mri
    viewer, image = open_in_viewer(read_nifti(str(path))[0])
    labels = viewer.add_labels(
        ras_mask.astype(np.uint8) * 3, name="flair labels", metadata=dict(image.metadata), scale=image.scale
    )
    out = tmp_path / "mask.nii.gz"
    labels.save(str(out), plugin="segnet-domains")
    src, got = nib.load(path), nib.load(out)
    assert got.shape == src.shape
    np.testing.assert_array_equal(got.affine, src.affine)
    for getter in ("get_qform", "get_sform"):
        (a, code_a), (b, code_b) = getattr(got, getter)(coded=True), getattr(src, getter)(coded=True)
        np.testing.assert_array_equal(a, b)
        assert int(code_a) == int(code_b)
    np.testing.assert_array_equal(got.header["pixdim"], src.header["pixdim"])
    assert got.header.get_data_dtype() == np.uint8
    # voxel for voxel: the mask lands where the lesions are in the *stored* orientation
    to_stored = ornt_transform(axcodes2ornt(("R", "A", "S")), io_orientation(src.affine))
    expected = apply_orientation(ras_mask, to_stored) * 3
    np.testing.assert_array_equal(np.asarray(got.dataobj), expected)
    stored_image = np.asarray(src.dataobj)
    assert (
        stored_image[expected == 3].mean() > 1.5 * stored_image[(expected == 0) & (stored_image > 100)].mean()
    )


def test_nifti_writer_refuses_wrong_shape_and_leaves_nothing(mri, tmp_path: Path) -> None:
    path, _, _ = mri
    ((_, kwargs, _),) = read_nifti(str(path))
    out = tmp_path / "bad.nii.gz"
    with pytest.raises(InputError, match="does not match the source volume"):
        write_labels_nifti(
            str(out), np.zeros((3, 4, 5), np.uint8), {"metadata": kwargs["metadata"], "name": "x"}
        )
    assert list(tmp_path.iterdir()) == []


def test_nifti_writer_without_source_uses_layer_scale(tmp_path: Path) -> None:
    out = tmp_path / "drawn.nii"
    data = np.zeros((4, 5, 6), np.uint16)
    data[1, 2, 3] = 300
    write_labels_nifti(str(out), data, {"name": "drawn", "scale": (2.0, 3.0, 4.0), "translate": (1, 2, 3)})
    img = nib.load(out)
    np.testing.assert_array_equal(img.affine, [[2, 0, 0, 1], [0, 3, 0, 2], [0, 0, 4, 3], [0, 0, 0, 1]])
    assert img.header.get_data_dtype() == np.uint16 and np.asarray(img.dataobj)[1, 2, 3] == 300


def test_geotiff_labels_round_trip_crs_transform(scene, tmp_path: Path) -> None:
    path, rgb = scene
    viewer, image = open_in_viewer(read_geotiff(str(path))[0])
    classes = (rgb[..., 2] > 100).astype(np.uint8) + (rgb[..., 0] > 150)
    meta = {
        **image.metadata,
        "segnet_domains": {"class_names": ["a", "b", "c"], "class_colors": [[0, 0, 0], [9, 8, 7], [1, 2, 3]]},
    }
    labels = viewer.add_labels(classes, name="scene labels", metadata=meta)
    out = tmp_path / "labels.tif"
    labels.save(str(out), plugin="segnet-domains")
    with rasterio.open(path) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs
        assert dst.transform == src.transform
        assert (dst.width, dst.height, dst.count) == (src.width, src.height, 1)
        np.testing.assert_array_equal(dst.read(1), classes)
        assert dst.colormap(1)[1] == (9, 8, 7, 255)
        assert json.loads(dst.tags()["CLASS_NAMES"]) == ["a", "b", "c"]


def test_geotiff_writer_needs_georeferenced_source(tmp_path: Path) -> None:
    out = tmp_path / "x.tif"
    with pytest.raises(InputError, match="no georeferencing"):
        write_labels_geotiff(str(out), np.zeros((4, 4), np.uint8), {"metadata": {}, "name": "drawn"})
    assert not out.exists()


def test_labels_of_a_dicom_layer_save_as_nifti_aligned_with_the_series(tmp_path: Path) -> None:
    """A series opened from DICOM (stored against the slice normal, oblique): its mask lands on its voxels."""
    from napari_plugin._reader import read_dicom
    from tests.data.dicom import block_volume, oblique_affine, write_series

    data = block_volume((10, 8, 6), (60.0, 300.0), seed=2)
    affine = oblique_affine(flip_slices=True)  # the reader stores these slices reversed
    write_series(tmp_path / "series", data, affine)
    ((ras, kwargs, _),) = read_dicom(str(tmp_path / "series"))
    viewer, image = open_in_viewer((ras, kwargs, "image"))
    labels = viewer.add_labels((ras > 200).astype(np.uint8), name="mask", metadata=dict(image.metadata))
    out = tmp_path / "mask.nii.gz"
    labels.save(str(out), plugin="segnet-domains")
    got = nib.load(out)
    # compare in world space with the volume as written: voxel (i, j, k) of the series sits at affine @ ijk
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in data.shape], indexing="ij"), -1).reshape(-1, 3)
    there = nib.affines.apply_affine(np.linalg.inv(got.affine), nib.affines.apply_affine(affine, ijk))
    idx = np.rint(there).astype(int)
    np.testing.assert_allclose(there, idx, atol=1e-3)
    mask = np.asarray(got.dataobj)
    np.testing.assert_array_equal(mask[tuple(idx.T)], (data > 200)[tuple(ijk.T)])
    assert 0.2 < mask.mean() < 0.8
