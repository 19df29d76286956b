"""napari readers: NIfTI volumes (nibabel), DICOM series (pydicom) and GeoTIFF scenes (rasterio).

NIfTI volumes are shown **reoriented to RAS+**, the orientation the network
sees (see :mod:`segnet_domains.medical.nifti`), so the slicing axis of the
widget means the same anatomical axis as ``segnet-domains predict-volume
--axis`` and as the checkpoint's ``slice_axis``. The layer scale is the voxel
spacing along those axes and the translate the RAS origin. The stored
affine, shape and the full header go into ``layer.metadata["nifti"]``; the
writer maps a mask back to the stored orientation and writes it with that
header, so it overlays the source voxel for voxel.

DICOM series (a folder, or one file of it) go through the same reader as
``predict-volume`` (:mod:`segnet_domains.medical.dicom`: slices sorted along
the normal, affine from the DICOM geometry, rescale applied) and are shown
exactly like the NIfTI volume of the same voxels and affine; a folder with
several series opens one layer per series.

GeoTIFF scenes are opened with :func:`~segnet_domains.geo.scene.open_scene`
(the tiler's reader, so both refuse the same files in the same words), keep
their bands as channels (``H×W`` for one band, ``H×W×3/4`` shown as colour
for 8-bit RGB(A), ``C×H×W`` otherwise) and their CRS (WKT), transform (an
``affine.Affine``) and nodata in ``layer.metadata["geotiff"]``, with the
class names and colours of a label raster of ours
(:func:`~segnet_domains.geo.outputs.read_label_metadata`) when it has them. Scenes above
:data:`LAZY_PIXELS` are opened lazily as a multiscale pyramid of dask arrays
read window by window through rasterio (GDAL uses the file's overviews for the
reduced levels), so a 20000² scene is never loaded whole just to be shown.

Each ``get_*_reader`` returns ``None`` for paths it cannot read, so napari
tries other readers.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segnet_domains.errors import InputError
from segnet_domains.medical.dicom import find_series, is_dicom, is_dicom_file, read_dicom_series
from segnet_domains.medical.nifti import Volume, is_nifti, read_volume

PathLike = str | os.PathLike[str]
LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[PathLike | Sequence[PathLike]], list[LayerData]]

#: Rasters with more pixels than this (per band) open lazily as a multiscale pyramid.
LAZY_PIXELS = 4096 * 4096
#: Edge of the dask chunks (and of the smallest pyramid level).
CHUNK = 1024
#: GDAL block cache (MB) while reading pyramid chunks.
GDAL_CACHE_MB = 64
_TIFF_SUFFIXES = (".tif", ".tiff")


def _paths(path: PathLike | Sequence[PathLike]) -> list[str]:
    if isinstance(path, str | os.PathLike):
        return [os.fspath(path)]
    return [os.fspath(p) for p in path]


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


# --------------------------------------------------------------------------- NIfTI


def get_nifti_reader(path: PathLike | Sequence[PathLike]) -> ReaderFunction | None:
    """Return :func:`read_nifti` if every path is a readable NIfTI file, else ``None``."""
    import nibabel as nib

    paths = _paths(path)
    if not paths or not all(is_nifti(p) and os.path.isfile(p) for p in paths):
        return None
    for p in paths:
        try:
            nib.load(p)  # header only: cheap
        except Exception:  # noqa: BLE001 - any failure means "not ours", napari tries other readers
            return None
    return read_nifti


def read_nifti(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Read NIfTI volumes as Image layers in RAS+ orientation with spacing as scale.

    Raises:
        InputError: a file that turns out unreadable (truncated data, not 3D, NaN).
    """
    return [volume_layer(read_volume(p), _stem(p)) for p in _paths(path)]


def volume_layer(vol: Volume, name: str, extra: dict[str, Any] | None = None) -> LayerData:
    """An Image layer of a volume (NIfTI or DICOM) in RAS+ orientation, its geometry in ``metadata["nifti"]``.

    Args:
        vol: what :func:`~segnet_domains.medical.volumes.read_any_volume` returned.
        name: the layer name.
        extra: more metadata (e.g. ``{"dicom": {...}}``).
    """
    ras = np.ascontiguousarray(vol.to_ras())
    ras_affine = vol.ras_affine()
    spacing = np.linalg.norm(ras_affine[:3, :3], axis=0)
    lo, hi = np.percentile(ras, [0.5, 99.5]) if ras.size else (0.0, 1.0)
    header = vol.image.header
    meta = {
        "nifti": {
            "path": os.path.abspath(vol.path),
            "header": bytes(header.binaryblock),
            "header_class": type(header).__name__,
            "affine": vol.affine.tolist(),
            "stored_shape": list(vol.data.shape),
            "stored_axcodes": list(vol.axcodes),
            "stored_spacing": list(vol.spacing),
            "ras_affine": ras_affine.tolist(),
            "orientation": "RAS",
        },
        **(extra or {}),
    }
    kwargs = {
        "name": name,
        "scale": tuple(float(s) for s in spacing),
        "translate": tuple(float(t) for t in ras_affine[:3, 3]),
        "metadata": meta,
        "colormap": "gray",
        "contrast_limits": (float(lo), float(hi) if hi > lo else float(lo) + 1.0),
    }
    return (ras, kwargs, "image")


# --------------------------------------------------------------------------- DICOM


def get_dicom_reader(path: PathLike | Sequence[PathLike]) -> ReaderFunction | None:
    """Return :func:`read_dicom` for a folder holding DICOM files or a DICOM file, else ``None``.

    Cheap: it looks for the ``DICM`` marker, it does not parse the series.
    """
    paths = _paths(path)
    if not paths or not all(_looks_dicom(p) for p in paths):
        return None
    return read_dicom


def _looks_dicom(path: str) -> bool:
    if is_nifti(path):
        return False
    if os.path.isdir(path):
        return is_dicom(path)
    return os.path.isfile(path) and is_dicom_file(path)


def read_dicom(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Read DICOM series as Image layers, shown and described like NIfTI volumes.

    A folder gives one layer per image series it holds (napari has no
    ``--series`` to ask for); a file gives its own series. The layer keeps
    the series' UID, description and files in ``metadata["dicom"]`` beside
    the geometry in ``metadata["nifti"]``, so the NIfTI writer saves masks
    aligned with the series.

    Raises:
        InputError: a broken series (see :func:`~segnet_domains.medical.dicom.read_dicom_series`).
    """
    layers = []
    for p in _paths(path):
        uids = list(find_series(p)) if os.path.isdir(p) else [None]
        for uid in uids:
            vol = read_dicom_series(p, uid)
            dicom = {
                "series_uid": vol.series_uid,
                "description": vol.description,
                "files": [os.path.abspath(f) for f in vol.files],
            }
            name = vol.description or Path(p).name
            layers.append(volume_layer(vol, name if len(uids) == 1 else f"{name} ({vol.series_uid[-8:]})",
                                       {"dicom": dicom}))  # fmt: skip
    return layers


# --------------------------------------------------------------------------- GeoTIFF


def get_geotiff_reader(path: PathLike | Sequence[PathLike]) -> ReaderFunction | None:
    """Return :func:`read_geotiff` for georeferenced TIFFs, else ``None`` (plain TIFFs go elsewhere)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    paths = _paths(path)
    if not paths or not all(p.lower().endswith(_TIFF_SUFFIXES) and os.path.isfile(p) for p in paths):
        return None
    for p in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(p) as src:
                    if src.crs is None and src.transform.is_identity:
                        return None
        except (RasterioIOError, OSError):
            return None
    return read_geotiff


def geotiff_layout(count: int, dtype: str) -> str:
    """``"hw"`` for one band, ``"hwc"`` (shown as colour) for 8-bit RGB(A), ``"chw"`` otherwise."""
    if count == 1:
        return "hw"
    if count in (3, 4) and dtype == "uint8":
        return "hwc"
    return "chw"


def read_geotiff(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Read GeoTIFF scenes as Image layers, lazily (multiscale dask) above :data:`LAZY_PIXELS`.

    Raises:
        InputError: a scene that turns out unreadable (truncated, corrupt).
    """
    from rasterio.errors import RasterioError

    layers = []
    for p in _paths(path):
        try:
            layers.append(_read_one_geotiff(p))
        except (RasterioError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(p, f"unreadable raster ({first})") from None
    return layers


def _read_one_geotiff(p: str) -> LayerData:
    """One scene as an Image layer (see :func:`read_geotiff`)."""
    import rasterio

    from segnet_domains.geo.outputs import read_label_metadata
    from segnet_domains.geo.scene import open_scene

    scene = open_scene(p)
    layout = geotiff_layout(scene.count, scene.dtype)
    geo = {
        "path": os.path.abspath(p),
        "crs": scene.crs,
        "transform": scene.affine,
        "height": scene.height,
        "width": scene.width,
        "count": scene.count,
        "dtype": scene.dtype,
        "nodata": scene.nodata,
        "band_names": [d or f"band {i + 1}" for i, d in enumerate(scene.descriptions)],
        "layout": layout,
    }
    lazy = scene.height * scene.width > LAZY_PIXELS
    with rasterio.open(p) as src:
        classes = read_label_metadata(src)
        if classes.class_names:
            geo["class_names"] = list(classes.class_names)
            geo["class_colors"] = [list(c) for c in classes.class_colors]
        data: Any = (
            _pyramid(p, scene.count, scene.height, scene.width, scene.dtype, layout) if lazy else src.read()
        )
    if not lazy:
        data = data[0] if layout == "hw" else (np.moveaxis(data, 0, -1) if layout == "hwc" else data)
    scale = (abs(scene.affine.e) or 1.0, abs(scene.affine.a) or 1.0)
    kwargs: dict[str, Any] = {
        "name": _stem(p),
        "metadata": {"geotiff": geo},
        "rgb": layout == "hwc",
        "multiscale": lazy,
        "scale": (1.0, *scale) if layout == "chw" else scale,
    }
    return data, kwargs, "image"


def open_pyramid(path: PathLike) -> list[Any]:
    """A raster as lazily read levels (full, ½, ¼ … resolution), in :func:`geotiff_layout` order."""
    import rasterio

    with rasterio.open(path) as src:
        count, height, width, dtype = src.count, src.height, src.width, src.dtypes[0]
    return _pyramid(os.fspath(path), count, height, width, dtype, geotiff_layout(count, dtype))


def _pyramid(path: str, count: int, height: int, width: int, dtype: str, layout: str) -> list[Any]:
    """Dask arrays at full, ½, ¼ … resolution down to one chunk, each chunk one rasterio window read."""
    import dask.array as da

    levels = []
    factor = 1
    while True:
        h, w = math.ceil(height / factor), math.ceil(width / factor)
        chunks = ((count,), _chunks(h), _chunks(w))
        arr = da.map_blocks(
            _read_block,
            path=path,
            factor=factor,
            size=(height, width),
            dtype=np.dtype(dtype),
            chunks=chunks,
            meta=np.empty((0, 0, 0), dtype),
        )
        arr = arr[0] if layout == "hw" else (arr.transpose(1, 2, 0) if layout == "hwc" else arr)
        levels.append(arr)
        if max(h, w) <= CHUNK:
            return levels
        factor *= 2


def _chunks(n: int) -> tuple[int, ...]:
    return tuple(min(CHUNK, n - s) for s in range(0, n, CHUNK))


def _read_block(path: str, factor: int, size: tuple[int, int], block_info: Any = None) -> np.ndarray:
    """Read one chunk of pyramid level ``factor`` (nearest resampling; GDAL picks overviews)."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    height, width = size
    row, col = r0 * factor, c0 * factor
    win = Window(col, row, min(c1 * factor, width) - col, min(r1 * factor, height) - row)
    # A small block cache: a reduced level of a file without overviews reads every full-resolution
    # block once, and GDAL's default cache (5% of RAM) would keep them all.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(path) as src:
        return src.read(window=win, out_shape=(src.count, r1 - r0, c1 - c0), resampling=Resampling.nearest)
