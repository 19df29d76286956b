"""napari writers: a Labels layer back to its source's geometry.

* NIfTI: the labels (RAS+, as the reader shows volumes) are mapped back to
  the stored orientation and written with the source's affine, header,
  qform and sform (:func:`segnet_domains.medical.nifti.write_like`), so the
  mask overlays the source voxel for voxel in any viewer.
* GeoTIFF: the labels are written with the source's CRS and transform, one
  band, deflate-compressed and tiled, with the class names, colour table and
  nodata of :func:`segnet_domains.geo.outputs.label_metadata` (the tiler's
  convention, documented in :mod:`segnet_domains.geo.outputs`).

Both write under a temporary name and rename when complete. Use them with
``layer.save("mask.nii.gz", plugin="segnet-domains")`` or File ▸ Save.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np

from segnet_domains.errors import InputError
from segnet_domains.io.atomic import atomic_output
from segnet_domains.io.safety import FileOutput, check_outputs, is_nifti_file, is_tiff_file
from segnet_domains.medical.nifti import Volume, write_like

from ._layers import META_KEY


def _labels_dtype(data: np.ndarray) -> type:
    top = int(np.max(data)) if data.size else 0
    low = int(np.min(data)) if data.size else 0
    if low >= 0 and top < 256:
        return np.uint8
    if low >= 0 and top < 65536:
        return np.uint16
    return np.int32


def _check_target(path: str, source: str | None, output: FileOutput) -> None:
    """The path is not the layer's source file, a folder, a FIFO or a foreign file (napari asked about
    replacing one of our own kind already)."""
    check_outputs([source], [output])


def _is_multiscale(data: Any) -> bool:
    return isinstance(data, list | tuple) or type(data).__name__ == "MultiScaleData"


def _metadata(meta: dict[str, Any]) -> dict[str, Any]:
    return dict(meta.get("metadata") or {})


def source_volume(nifti_meta: dict[str, Any]) -> Volume:
    """Rebuild the source's geometry (header, affine, stored shape) from a layer's ``metadata["nifti"]``."""
    import nibabel as nib

    header_cls = nib.Nifti2Header if nifti_meta.get("header_class") == "Nifti2Header" else nib.Nifti1Header
    header = header_cls(binaryblock=nifti_meta["header"])
    if header_cls is nib.Nifti2Header:
        header = nib.Nifti1Header.from_header(header)
    shape = tuple(int(s) for s in nifti_meta["stored_shape"])
    stand_in = np.broadcast_to(np.zeros((), np.float32), shape)
    image = nib.Nifti1Image(stand_in, header.get_best_affine(), header=header)
    return Volume(data=stand_in, image=image, path=nifti_meta.get("path", ""))


def write_labels_nifti(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer as NIfTI with its source volume's affine and header.

    Layers without NIfTI metadata (drawn by hand on an image from another
    reader) are written with an affine made of the layer's scale and translate.

    Returns:
        ``[path]``.

    Raises:
        InputError: the labels' shape differs from the source volume's.
    """
    import nibabel as nib

    nifti = _metadata(meta).get("nifti")
    mask = FileOutput(
        path, "NIfTI mask", "the file name", (".nii", ".nii.gz"), ours=is_nifti_file, exists="ours"
    )
    _check_target(path, (nifti or {}).get("path"), mask)
    labels = np.asarray(data)
    dtype = _labels_dtype(labels)
    if nifti is None:
        if labels.ndim != 3:
            raise InputError(path, f"NIfTI needs 3D labels, layer '{meta.get('name')}' is {labels.ndim}D")
        affine = np.eye(4)
        affine[:3, :3] = np.diag(np.asarray(meta.get("scale", (1, 1, 1)), float)[-3:])
        affine[:3, 3] = np.asarray(meta.get("translate", (0, 0, 0)), float)[-3:]
        img = nib.Nifti1Image(labels.astype(dtype), affine)
        img.header["descrip"] = b"segnet-domains labels"
        with atomic_output(path) as tmp:
            nib.save(img, tmp)
        return [path]
    volume = source_volume(nifti)
    expected = tuple(int(s) for s in np.asarray(nifti["stored_shape"])[list(_ras_order(volume))])
    if labels.shape != expected:
        raise InputError(
            path, f"labels shape {labels.shape} does not match the source volume {expected} (RAS order)"
        )
    stored = volume.from_ras(labels) if nifti.get("orientation", "RAS") == "RAS" else labels
    write_like(volume, stored, path, dtype=dtype)
    return [path]


def _ras_order(volume: Volume) -> tuple[int, ...]:
    """For each RAS axis, the stored axis it comes from."""
    from nibabel.orientations import io_orientation

    ornt = io_orientation(volume.affine)
    order = [0, 0, 0]
    for stored_axis, (ras_axis, _) in enumerate(ornt):
        order[int(ras_axis)] = stored_axis
    return tuple(order)


def write_labels_geotiff(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer as a GeoTIFF with its source scene's CRS and transform.

    Returns:
        ``[path]``.

    Raises:
        InputError: the layer has no GeoTIFF source, or its shape differs from it.
    """
    import rasterio

    from segnet_domains.geo.outputs import label_metadata

    md = _metadata(meta)
    files = (md.get(META_KEY) or {}).get("files") or []
    tif = FileOutput(
        path, "GeoTIFF mask", "the file name", (".tif", ".tiff"), ours=is_tiff_file, exists="ours"
    )
    _check_target(path, (md.get("geotiff") or {}).get("path"), tif)
    if _is_multiscale(data) and files and os.path.isfile(files[0]):
        # a scene segmented out of core: its labels are already a COG with the scene's CRS/transform
        with atomic_output(path) as tmp:
            shutil.copyfile(files[0], tmp)
        return [os.fspath(path)]
    labels = np.asarray(data[0] if _is_multiscale(data) else data)
    geo = md.get("geotiff")
    if geo is None:
        raise InputError(
            path,
            f"layer '{meta.get('name')}' has no georeferencing; segment a layer opened from a GeoTIFF "
            "with the segnet-domains reader",
        )
    shape = (int(geo["height"]), int(geo["width"]))
    if labels.shape != shape:
        raise InputError(path, f"labels shape {labels.shape} does not match the source scene {shape}")
    dtype = _labels_dtype(labels)
    h, w = shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": h,
        "width": w,
        "count": 1,
        "dtype": np.dtype(dtype).name,
        "crs": geo["crs"],
        "transform": geo["transform"],
        "compress": "deflate",
    }
    if h >= 256 and w >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    seg = md.get(META_KEY) or {}
    classes = label_metadata(seg.get("class_names"), seg.get("class_colors"), profile["dtype"])
    with atomic_output(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(labels.astype(dtype), 1)
        classes.apply(dst)
    return [os.fspath(path)]
