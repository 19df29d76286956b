"""One uploaded file → its mask file with the input's geometry, and the arrays the page draws.

Each kind of upload goes through the library function its CLI command calls,
so the web demo reads, normalises, infers and writes exactly as the CLI does:

* ``volume`` — NIfTI (``.nii``, ``.nii.gz``): :func:`~segnet_domains.predict_files.predict_volume_file`
  (``predict-volume``); the mask is NIfTI with the input's affine, header, qform and sform.
* ``scene`` — a georeferenced TIFF (CRS or geotransform): :func:`~segnet_domains.geo.tiler.tile_scene`
  (``tile``); the mask is a COG with the scene's CRS, transform and colour table.
* ``image`` — PNG/JPEG/GIF/BMP/TIFF without georeferencing:
  :func:`~segnet_domains.predict_files.predict_image_file` (``predict-image``); the mask is a PNG.

Monte Carlo uncertainty (dropout models) adds a second file: the Segmenter's
Monte Carlo per-class variance of the softmax averaged over classes
(:func:`~segnet_domains.inference.class_mean_variance`), as float32 in the
mask's format (NIfTI, GeoTIFF, or TIFF beside a PNG mask).

Everything happens inside one temporary folder per upload, removed before
:func:`segment_upload` returns; the results come back as bytes and arrays.
"""

from __future__ import annotations

import base64
import io
import math
import shutil
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import rasterio
import tifffile
from rasterio.crs import CRS
from rasterio.enums import Resampling

from segnet_domains.errors import InputError
from segnet_domains.geo.outputs import LABEL_NODATA
from segnet_domains.geo.scene import open_scene, select_bands
from segnet_domains.geo.tiler import TileOptions, tile_scene
from segnet_domains.inference import Segmenter, class_mean_variance, drive
from segnet_domains.io.atomic import atomic_output
from segnet_domains.io.images import TIFF_SUFFIXES, read_image, to_display_rgb
from segnet_domains.medical.nifti import NIFTI_SUFFIXES, Volume, is_nifti, read_volume, write_like
from segnet_domains.predict_files import predict_image_file, predict_volume_file
from segnet_domains.web.models import ModelRegistry, ServedModel

#: Suffixes of plain 2D images (TIFFs with georeferencing are scenes).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", *TIFF_SUFFIXES)
#: Most pixels of an image or scene the page receives (it is decimated beyond).
PREVIEW_PIXELS = 2048 * 2048
#: Most voxels of a volume the page receives.
PREVIEW_VOXELS = 256**3

ProgressCallback = Callable[[int, int], None]

MEDIA_TYPES = {
    ".png": "image/png",
    ".tif": "image/tiff",
    ".gz": "application/gzip",
    ".nii": "application/octet-stream",
}


@dataclass
class JobOptions:
    """A request's options: ``axis`` (volumes; RAS: 0 sagittal, 1 coronal, 2 axial), MC uncertainty."""

    axis: int | None = None
    uncertainty: bool = False
    samples: int = 8


@dataclass
class OutputFile:
    """A file written for the request, read back into memory (its folder is gone)."""

    name: str
    media_type: str
    data: bytes


@dataclass
class Preview:
    """What the page draws.

    Attributes:
        image: ``uint8``: ``H×W×3`` for images and scenes, ``X×Y×Z`` grey in RAS for volumes.
        labels: class per pixel/voxel on the same grid (``LABEL_NODATA`` outside a scene's footprint).
        uncertainty: float32 on the same grid, or ``None``.
        step: decimation of the preview against the full-resolution mask (1: none).
        spacing: voxel size in mm along the RAS axes (volumes).
    """

    image: np.ndarray
    labels: np.ndarray
    uncertainty: np.ndarray | None = None
    step: int = 1
    spacing: list[float] | None = None


@dataclass
class JobResult:
    """The outcome of one upload."""

    kind: str
    model: str
    source: str
    shape: tuple[int, ...]
    counts: dict[str, int]
    files: list[OutputFile]
    preview: Preview | None = None
    axis: int | None = None
    geometry: dict[str, Any] = field(default_factory=dict)

    def download(self) -> OutputFile:
        """The mask, or a ZIP of the mask and the uncertainty file."""
        if len(self.files) == 1:
            return self.files[0]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in self.files:
                zf.writestr(f.name, f.data)
        stem = stem_of(self.source)
        return OutputFile(f"{stem}_segnet.zip", "application/zip", buf.getvalue())


def stem_of(name: str | Path) -> str:
    """File name without its image/volume suffix (``a.nii.gz`` → ``a``)."""
    name = Path(name).name
    for suffix in (*NIFTI_SUFFIXES[::-1], *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or "upload"


def upload_name(filename: str | None) -> str:
    """A safe base name for an uploaded file (its folder parts dropped)."""
    name = Path(str(filename or "").replace("\\", "/")).name
    if name in ("", ".", "..") or "\x00" in name or len(name.encode()) > 200:
        return "upload"
    return name


def file_kind(path: Path) -> str:
    """``"volume"``, ``"scene"`` or ``"image"`` from the name and, for TIFFs, the georeferencing.

    Raises:
        InputError: a suffix none of the three kinds has.
    """
    if is_nifti(path):
        return "volume"
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES and _georeferenced(path):
        return "scene"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    raise InputError(
        path,
        f"unsupported file type {suffix or '(no suffix)'}: expected PNG/JPEG/TIFF, NIfTI (.nii, .nii.gz) "
        "or GeoTIFF",
    )


def _georeferenced(path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rasterio's NotGeoreferencedWarning for plain TIFFs
            scene = open_scene(path)
    except InputError:
        return False  # read as a plain image, whose reader names the problem
    return scene.crs is not None or scene.transform is not None


def segment_upload(
    registry: ModelRegistry,
    filename: str | None,
    data: IO[bytes],
    model: str | None = None,
    options: JobOptions | None = None,
    preview: bool = False,
    progress: ProgressCallback | None = None,
) -> JobResult:
    """Segment an uploaded file with a served model, in a temporary folder removed before returning.

    Args:
        registry: the served models.
        filename: the upload's file name (its suffix decides the kind).
        data: the upload's bytes.
        model: a model name; ``None`` picks one whose domain suits the file.
        options: :class:`JobOptions`.
        preview: also return the arrays the page draws.
        progress: ``callback(done, total)`` (volume slices, scene tiles).

    Raises:
        InputError: a bad file, model or option; the message names the upload as
            the user called it, as the CLI's line names the file it was given.
    """
    options = options or JobOptions()
    name = upload_name(filename)
    with tempfile.TemporaryDirectory(prefix="segnet-serve-") as tmp:
        src = Path(tmp) / "in" / name
        src.parent.mkdir()
        with src.open("wb") as fh:
            shutil.copyfileobj(data, fh, length=1 << 20)
        out = Path(tmp) / "out"
        out.mkdir()
        try:
            kind = file_kind(src)
            served = registry.pick(model, kind)
            _check_options(served, kind, options)
            with served.lock:
                return _JOBS[kind](served, src, out, options, preview, progress)
        except InputError as exc:
            text = str(exc).replace(str(src), name).replace(str(tmp), "")
            raise InputError(None, text) from None


def _check_options(served: ServedModel, kind: str, options: JobOptions) -> None:
    if options.axis is not None and options.axis not in (0, 1, 2):
        raise InputError(None, f"axis must be 0, 1 or 2 (got {options.axis})")
    if options.uncertainty:
        served.segmenter.info.require_dropout(served.name, "uncertainty")
    if options.samples < 2:
        raise InputError(None, f"Monte Carlo uncertainty needs at least 2 samples (got {options.samples})")


def _read(path: Path) -> OutputFile:
    suffix = path.suffix.lower()
    return OutputFile(path.name, MEDIA_TYPES.get(suffix, "application/octet-stream"), path.read_bytes())


def _counts(labels: np.ndarray, names: list[str]) -> dict[str, int]:
    flat = labels.ravel()
    counts = np.bincount(flat[flat < len(names)], minlength=len(names))
    return {n: int(c) for n, c in zip(names, counts)}


# --------------------------------------------------------------------------- images


def _image_job(
    served: ServedModel,
    src: Path,
    out: Path,
    options: JobOptions,
    preview: bool,
    progress: ProgressCallback | None,
) -> JobResult:
    seg = served.segmenter
    mask = out / f"{stem_of(src)}_labels.png"
    labels = predict_image_file(seg, src, mask)  # what ``predict-image`` runs
    files = [_read(mask)]
    image = read_image(src) if preview or options.uncertainty else None
    unc = None
    if options.uncertainty:
        _, var = seg.predict_uncertainty(image, options.samples, source=str(src))
        unc = class_mean_variance(var)
        path = out / f"{stem_of(src)}_uncertainty.tif"
        with atomic_output(path) as tmp:
            tifffile.imwrite(tmp, unc.astype(np.float32), compression="zlib")
        files.append(_read(path))
    view = None
    if preview:
        step = _step(labels.size, PREVIEW_PIXELS, 2)
        sub = (slice(None, None, step),) * 2
        view = Preview(to_display_rgb(image)[sub], labels[sub], None if unc is None else unc[sub], step=step)
    return JobResult(
        "image", served.name, src.name, labels.shape, _counts(labels, seg.info.class_names), files, view
    )


def _step(size: int, budget: int, dims: int) -> int:
    return max(1, math.ceil((size / budget) ** (1 / dims)))


# --------------------------------------------------------------------------- volumes


def _volume_job(
    served: ServedModel,
    src: Path,
    out: Path,
    options: JobOptions,
    preview: bool,
    progress: ProgressCallback | None,
) -> JobResult:
    """``predict-volume``'s job; the uncertainty pass runs the Segmenter's Monte Carlo volume loop."""
    seg = served.segmenter
    passes = 2 if options.uncertainty else 1
    first = (lambda d, t: progress(d, passes * t)) if progress else False
    mask = out / f"{stem_of(src)}_labels.nii.gz"
    labels = predict_volume_file(seg, src, mask, axis=options.axis, progress=first)  # type: ignore[arg-type]
    files = [_read(mask)]
    volume = read_volume(src)
    axis = seg.volume_axis(options.axis)
    unc = None
    if options.uncertainty:
        gen = seg.iter_volume(volume.to_ras(), axis, source=str(src), mc_samples=options.samples)
        second = (lambda d, t: progress(t + d, 2 * t)) if progress else False
        _, _, var = drive(gen, second)
        unc = volume.from_ras(class_mean_variance(var))
        path = out / f"{stem_of(src)}_uncertainty.nii.gz"
        write_like(volume, unc, path, dtype=np.float32)
        files.append(_read(path))
    view = None
    if preview:
        step = _step(labels.size, PREVIEW_VOXELS, 3)
        sub = (slice(None, None, step),) * 3

        def ras(a: np.ndarray) -> np.ndarray:  # stored orientation → RAS, as the network saw it
            return Volume(a, volume.image, volume.path).to_ras()[sub]

        spacing = np.sqrt((volume.ras_affine()[:3, :3] ** 2).sum(0)) * step
        view = Preview(
            _ras_grey(volume, sub),
            ras(labels),
            None if unc is None else ras(unc),
            step=step,
            spacing=[round(float(s), 4) for s in spacing],
        )
    geometry = {
        "affine": np.round(volume.affine, 6).tolist(),
        "axcodes": "".join(volume.axcodes),
        "spacing": list(volume.spacing),
    }
    return JobResult(
        "volume",
        served.name,
        src.name,
        labels.shape,
        _counts(labels, seg.info.class_names),
        files,
        view,
        axis=axis,
        geometry=geometry,
    )


def _ras_grey(volume: Volume, sub: tuple[slice, ...]) -> np.ndarray:
    """The (decimated) volume in RAS as display grey levels (1–99 % stretch of :func:`to_display_rgb`)."""
    ras = volume.to_ras()[sub]
    return to_display_rgb(ras.reshape(ras.shape[0], -1))[..., 0].reshape(ras.shape)


# --------------------------------------------------------------------------- scenes


def _scene_job(
    served: ServedModel,
    src: Path,
    out: Path,
    options: JobOptions,
    preview: bool,
    progress: ProgressCallback | None,
) -> JobResult:
    """``tile``'s job; a scene smaller than the model's tile gets the tile ``tile`` fits to it."""
    seg = served.segmenter
    scene = open_scene(src)
    tile_opts = TileOptions(uncertainty=options.uncertainty, samples=options.samples)
    result = tile_scene(seg, src, out, tile_opts, progress=progress or False)
    paths = [Path(p) for p in result.outputs]
    files = [_read(p) for p in paths]
    names = seg.info.class_names
    counts = np.zeros(len(names), np.int64)
    with rasterio.open(paths[0]) as ds:  # block by block: the mask of a big scene is never read whole
        for _, window in ds.block_windows(1):
            block = ds.read(1, window=window).ravel()
            counts += np.bincount(block[block < len(names)], minlength=len(names))
    view = _scene_preview(seg, src, paths, scene.height, scene.width) if preview else None
    crs = CRS.from_wkt(scene.crs).to_string() if scene.crs else None
    return JobResult(
        "scene",
        served.name,
        src.name,
        (scene.height, scene.width),
        {n: int(c) for n, c in zip(names, counts)},
        files,
        view,
        geometry={"crs": crs, "transform": list(scene.transform) if scene.transform else None},
    )


def display_bands(bands: list[int], names: list[str | None]) -> list[int]:
    """Bands to show as RGB: those named red, green, blue when all three are there, else the first three."""
    lower = [str(n).lower() if n else "" for n in names]
    if all(c in lower for c in ("red", "green", "blue")):
        return [bands[lower.index(c)] for c in ("red", "green", "blue")]
    return bands[:3]


def _scene_preview(seg: Segmenter, src: Path, outputs: list[Path], height: int, width: int) -> Preview:
    """Decimated reads (nearest) of the scene's display bands and of the written outputs."""
    scene = open_scene(src)
    bands = select_bands(scene, seg.info)
    names = seg.info.band_names or [scene.descriptions[b - 1] for b in bands]
    show = display_bands(bands, list(names))
    step = _step(height * width, PREVIEW_PIXELS, 2)
    shape = (math.ceil(height / step), math.ceil(width / step))
    with rasterio.open(src) as ds:
        image = ds.read(show, out_shape=(len(show), *shape), resampling=Resampling.nearest)
    reads = []
    for path in outputs:
        with rasterio.open(path) as ds:
            reads.append(ds.read(1, out_shape=shape, resampling=Resampling.nearest))
    unc = reads[-1].astype(np.float32) if len(reads) > 1 else None
    if unc is not None:
        unc = np.nan_to_num(unc)  # outside the footprint
    return Preview(to_display_rgb(image if len(show) == 3 else image[0]), reads[0], unc, step=step)


_JOBS = {"image": _image_job, "volume": _volume_job, "scene": _scene_job}


# --------------------------------------------------------------------------- JSON for the page


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A uint8 array as JSON: shape, and its C-order bytes zlib-compressed and base64-encoded."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = base64.b64encode(zlib.compress(array.tobytes(), 6)).decode("ascii")
    return {"shape": list(array.shape), "dtype": "uint8", "encoding": "zlib+base64", "data": data}


def preview_payload(result: JobResult, registry: ModelRegistry) -> dict[str, Any]:
    """The JSON the page draws from: the arrays, the model, class counts and the files to download."""
    view = result.preview
    payload: dict[str, Any] = {
        "kind": result.kind,
        "model": registry.models[result.model].describe(),
        "source": result.source,
        "shape": list(result.shape),
        "axis": result.axis,
        "counts": result.counts,
        "geometry": result.geometry,
        "files": [
            {"name": f.name, "media_type": f.media_type, "data": base64.b64encode(f.data).decode("ascii")}
            for f in result.files
        ],
    }
    if view is not None:
        payload["image"] = encode_array(view.image)
        payload["labels"] = encode_array(np.where(view.labels > 255, LABEL_NODATA, view.labels))
        payload["step"] = view.step
        payload["spacing"] = view.spacing
        payload["uncertainty"] = None
        if view.uncertainty is not None:
            top = float(np.nanmax(view.uncertainty)) if view.uncertainty.size else 0.0
            scaled = np.clip(np.nan_to_num(view.uncertainty) / max(top, 1e-12), 0, 1) * 255
            payload["uncertainty"] = {**encode_array(np.rint(scaled)), "max": top}
    return payload
