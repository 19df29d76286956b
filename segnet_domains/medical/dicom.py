"""DICOM series in (pydicom), DICOM SEG out (highdicom), with the geometry nibabel expects.

Reading
-------
A series is a folder of single-frame slices, or any one file of it (the
folder is then read, keeping that file's series). A folder holding several
image series is refused with their SeriesInstanceUIDs and descriptions; pick
one with ``series_uid`` (``predict-volume --series UID``).

The slices are sorted by position along the slice normal (row direction ×
column direction of ImageOrientationPatient) and become an ``I×J×K`` volume
(columns, rows, slices: the layout dcm2niix and nibabel use) whose RAS affine
is built from ImagePositionPatient, ImageOrientationPatient, PixelSpacing and
the *measured* slice spacing (first to last position over ``K - 1``; never
SliceThickness)::

    x_LPS = IPP_0 + i * PixelSpacing[1] * row_cos + j * PixelSpacing[0] * col_cos + k * slice_step
    x_RAS = diag(-1, -1, 1) @ x_LPS

The stored values go through the modality transform (RescaleSlope/Intercept
or a Modality LUT, :func:`pydicom.pixels.apply_modality_lut`). Compressed
transfer syntaxes decode through pydicom's installed handlers: RLE natively,
JPEG baseline and JPEG 2000 through Pillow, JPEG-LS through pyjpegls, JPEG
Lossless and HTJ2K with the ``dicom`` extra (python-gdcm, pylibjpeg).

The result is a :class:`DicomVolume`: the same :class:`~segnet_domains.medical.nifti.Volume`
the NIfTI reader returns (float32 voxels plus a ``Nifti1Image`` carrying the
affine), plus the slices' headers in volume order, so everything downstream
(RAS reorientation, inference, NIfTI output, napari) is unchanged.

Why not highdicom's ``get_volume_from_series``: it sorts against the normal
(its frames are right-handed in slice, row, column order), and when a series
is not a regular volume it answers only "not a regularly-spaced volume";
users need to know which file is missing or out of line. The checks below
name the slice at fault; the tests use highdicom's volume as an independent
reference for the affine.

Writing
-------
:func:`write_dicom_seg` writes labels as a DICOM Segmentation
(``highdicom.seg.Segmentation``, BINARY or LABELMAP) that references the
source series' SOP instances, one segment per non-background class labelled
with the checkpoint's class name, and the checkpoint's provenance as the
segmentation algorithm.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from pydicom import uid as uids
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut
from pydicom.sr.codedict import codes

from segnet_domains.errors import InputError
from segnet_domains.io.atomic import atomic_output
from segnet_domains.medical.nifti import Volume

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
SEG_TYPES = ("binary", "labelmap")
_LPS = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS
#: Tolerances of the series checks: direction cosines, and spacing relative to the slice spacing.
ORIENTATION_TOL = 1e-4
SPACING_RTOL = 0.01
#: Transfer syntaxes that the ``dicom`` extra (python-gdcm, pylibjpeg-openjpeg) makes readable.
EXTRA_DECODES = frozenset(
    {uids.JPEGLossless, uids.JPEGLosslessSV1, uids.HTJ2KLossless, uids.HTJ2KLosslessRPCL, uids.HTJ2K}
)
_READ_ERRORS = (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, struct.error)


@dataclass(frozen=True)
class SeriesSummary:
    """One image series found in a folder."""

    uid: str
    description: str
    files: tuple[Path, ...]

    def __str__(self) -> str:
        return f"{self.uid} '{self.description}' ({len(self.files)} files)"


@dataclass
class DicomVolume(Volume):
    """A :class:`~segnet_domains.medical.nifti.Volume` read from a DICOM series.

    Attributes:
        series_uid: the SeriesInstanceUID.
        description: the SeriesDescription (may be empty).
        files: the slice files in volume order (index ``k``).
        datasets: their headers (no pixel data), in the same order.
    """

    series_uid: str = ""
    description: str = ""
    files: list[Path] = field(default_factory=list)
    datasets: list[Dataset] = field(default_factory=list)


def is_dicom_file(path: str | Path) -> bool:
    """True for a file with the DICOM Part 10 marker (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def is_dicom(path: str | Path) -> bool:
    """True for a DICOM file, a ``.dcm`` name, or a folder holding at least one DICOM file."""
    path = Path(path)
    if path.is_dir():
        return any(p.is_file() and is_dicom_file(p) for p in _candidates(path))
    return path.suffix.lower() in DICOM_SUFFIXES or is_dicom_file(path)


def is_seg_output(path: str | Path) -> bool:
    """True when ``path`` names a DICOM SEG output (``.dcm``)."""
    return str(path).lower().endswith(".dcm")


def find_series(folder: str | Path) -> dict[str, SeriesSummary]:
    """The image series in ``folder`` (headers only), by SeriesInstanceUID.

    Files that are not DICOM are skipped (unless named ``*.dcm``), as are DICOM
    objects that are not images (DICOMDIR, reports) and segmentations.

    Raises:
        InputError: a ``.dcm`` or ``DICM``-marked file that cannot be read.
    """
    found: dict[str, list[tuple[Path, Dataset]]] = {}
    for path in _candidates(Path(folder)):
        if not (is_dicom_file(path) or path.suffix.lower() in DICOM_SUFFIXES):
            continue
        ds = _read_header(path)
        sop_class = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
        if sop_class is None or "Image Storage" not in getattr(sop_class, "name", ""):
            continue  # DICOMDIR, reports, presentation states, segmentations: not slices
        for keyword in ("SeriesInstanceUID", "Rows"):
            if keyword not in ds:
                raise InputError(path, f"truncated or incomplete DICOM header (no {keyword})")
        found.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
    return {
        key: SeriesSummary(key, str(items[0][1].get("SeriesDescription", "")), tuple(p for p, _ in items))
        for key, items in found.items()
    }


def read_dicom_series(path: str | Path, series_uid: str | None = None) -> DicomVolume:
    """Read a DICOM series (a folder, or one file of it) as a volume with its RAS affine.

    Args:
        path: the series folder, or one of its files.
        series_uid: the SeriesInstanceUID to read when the folder holds several.

    Raises:
        InputError: no series, several series and no (or an unknown) ``series_uid``,
            or a broken series: missing or extra slices, uneven spacing, slices of
            another size or orientation, non-image or truncated files, pixel data
            no installed decoder reads.
    """
    path = Path(path)
    summary = _choose_series(path, series_uid)
    headers = [(p, _read_header(p)) for p in summary.files]
    order, affine = series_geometry(headers)
    files = [headers[i][0] for i in order]
    frames, datasets = zip(*(_read_slice(f) for f in files))
    data = np.ascontiguousarray(np.stack(frames, axis=-1).transpose(1, 0, 2), dtype=np.float32)
    if not np.isfinite(data).all():
        raise InputError(summary.files[0].parent, "the series has NaN/Inf voxels after rescaling")
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)  # scanner coordinates
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = f"DICOM {summary.description}"[:79].encode("ascii", "replace")
    return DicomVolume(
        data=data,
        image=image,
        path=path,
        series_uid=summary.uid,
        description=summary.description,
        files=files,
        datasets=list(datasets),
    )


def series_geometry(headers: Sequence[tuple[Path, Dataset]]) -> tuple[list[int], np.ndarray]:
    """Check that slices form a regular volume; return their order along the normal and the RAS affine.

    Args:
        headers: ``(file, header)`` of every slice of one series, in any order.

    Returns:
        ``(order, affine)``: ``headers[order[k]]`` is slice ``k``; ``affine``
        maps ``(column, row, slice)`` indices to RAS millimetres.

    Raises:
        InputError: naming the first slice that breaks the volume.
    """
    first_path, first = headers[0]
    if len(headers) < 2:
        raise InputError(first_path, "the series has a single slice; predict-volume needs a 3D series")
    for p, ds in headers:
        _check_image_slice(p, ds)
    iop = np.asarray(first.ImageOrientationPatient, np.float64)
    spacing = np.asarray(first.PixelSpacing, np.float64)
    for p, ds in headers[1:]:
        _check_same_frame(p, ds, first, iop, spacing)
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    ipp = np.array([np.asarray(ds.ImagePositionPatient, np.float64) for _, ds in headers])
    along = ipp @ normal
    order = [int(i) for i in np.argsort(along, kind="stable")]
    _check_spacing([headers[i][0] for i in order], ipp[order], along[order], normal)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * spacing[1]
    lps[:3, 1] = col_cos * spacing[0]
    lps[:3, 2] = (ipp[order[-1]] - ipp[order[0]]) / (len(order) - 1)
    lps[:3, 3] = ipp[order[0]]
    ras = np.eye(4)
    ras[:3] = _LPS @ lps[:3]
    return order, ras


def _check_image_slice(path: Path, ds: Dataset) -> None:
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(
            path, "multi-frame (enhanced) DICOM is not supported; convert it to single-frame slices first"
        )
    for keyword in ("Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if ds.get(keyword) in (None, ""):
            kind = getattr(ds.get("SOPClassUID"), "name", None) or "DICOM object"
            raise InputError(path, f"not an image slice of a volume ({kind} without {keyword})")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise InputError(path, f"{ds.SamplesPerPixel} samples per pixel; only greyscale series are supported")


def _check_same_frame(path: Path, ds: Dataset, first: Dataset, iop: np.ndarray, spacing: np.ndarray) -> None:
    """One slice against the series' first: same size, orientation, pixel spacing and frame of reference."""
    if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
        size, usual = f"{ds.Rows}×{ds.Columns}", f"{first.Rows}×{first.Columns}"
        raise InputError(path, f"slice is {size} pixels, the series' others are {usual}")
    other = np.asarray(ds.ImageOrientationPatient, np.float64)
    if np.abs(other - iop).max() > ORIENTATION_TOL:
        raise InputError(
            path, f"orientation {_fmt(other)} differs from the series' {_fmt(iop)} (mixed stacks?)"
        )
    other = np.asarray(ds.PixelSpacing, np.float64)
    if np.abs(other - spacing).max() > 1e-4 * spacing.max():
        raise InputError(path, f"pixel spacing {_fmt(other)} differs from the series' {_fmt(spacing)}")
    if ds.get("FrameOfReferenceUID") != first.get("FrameOfReferenceUID"):
        raise InputError(path, "frame of reference differs from the series' other slices")


def _check_spacing(files: list[Path], ipp: np.ndarray, along: np.ndarray, normal: np.ndarray) -> None:
    """Sorted slices: no duplicates, stacked along the normal, evenly spaced (names a missing slice's gap)."""
    steps = np.diff(along)
    step = _usual_step(steps)
    for k, d in enumerate(steps):
        if d <= SPACING_RTOL * max(step, 1e-6):
            raise InputError(files[k + 1], f"same position as {files[k].name} (duplicate slice)")
    offsets = (ipp - ipp[0]) - np.outer(along - along[0], normal)
    off = np.linalg.norm(offsets, axis=1)
    if off.max() > SPACING_RTOL * step:
        k = int(off.argmax())
        raise InputError(
            files[k], f"slice is {off[k]:.3g} mm off the stack's axis (gantry tilt or mixed stacks)"
        )
    for k, d in enumerate(steps):
        if abs(d - step) <= SPACING_RTOL * step:
            continue
        ratio = d / step
        a, b = f"{files[k].name} ({along[k]:.4g} mm)", f"{files[k + 1].name} ({along[k + 1]:.4g} mm)"
        between = f"between {a} and {b}"
        if abs(ratio - round(ratio)) <= SPACING_RTOL * round(ratio):
            raise InputError(files[k + 1], f"{round(ratio) - 1} slice(s) missing {between}")
        raise InputError(files[k + 1], f"uneven slice spacing: {d:.4g} mm {between}, {step:.4g} mm elsewhere")


def _usual_step(steps: np.ndarray) -> float:
    """The slice spacing most steps agree with (the smaller on a tie, so one gap reads as a missing slice)."""
    votes = [int((np.abs(steps - s) <= SPACING_RTOL * abs(s)).sum()) for s in steps]
    best = max(votes)
    return float(min(s for s, v in zip(steps, votes) if v == best))


def _choose_series(path: Path, series_uid: str | None) -> SeriesSummary:
    if not path.exists():
        raise InputError(path, "file or folder not found")
    wanted = series_uid
    if path.is_file():
        header = _read_header(path)
        if "SeriesInstanceUID" not in header:
            raise InputError(path, "DICOM file without a SeriesInstanceUID")
        wanted = wanted or str(header.SeriesInstanceUID)
    folder = path if path.is_dir() else path.parent
    series = find_series(folder)
    if not series:
        raise InputError(folder, "no DICOM image series in this folder")
    if wanted is None:
        if len(series) > 1:
            listing = "; ".join(str(s) for s in series.values())
            raise InputError(
                folder, f"holds {len(series)} DICOM series, choose one with --series UID: {listing}"
            )
        return next(iter(series.values()))
    if wanted not in series:
        listing = "; ".join(str(s) for s in series.values())
        raise InputError(folder, f"no image series {wanted} here; found: {listing}")
    return series[wanted]


def _candidates(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise InputError(folder, f"cannot list the folder ({exc.strerror})") from None


def _read_header(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        raise InputError(path, "not a DICOM file (no DICM marker)") from None
    except _READ_ERRORS as exc:
        raise InputError(path, f"truncated or corrupt DICOM header ({_short(exc)})") from None


def _read_slice(path: Path) -> tuple[np.ndarray, Dataset]:
    """One slice's modality values (``rows × columns`` float32) and its header without the pixels."""
    try:
        ds = pydicom.dcmread(path)
    except _READ_ERRORS as exc:
        raise InputError(path, f"truncated or corrupt DICOM file ({_short(exc)})") from None
    if "PixelData" not in ds:
        raise InputError(path, "no pixel data (truncated, or not an image)")
    syntax = ds.file_meta.get("TransferSyntaxUID")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns before it fails on short pixel data
            pixels = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        name = getattr(syntax, "name", syntax)
        hint = "; pip install 'segnet-domains[dicom]' adds its decoder" if syntax in EXTRA_DECODES else ""
        raise InputError(
            path, f"pixel data compressed as {name}, which no installed decoder reads ({_short(exc)}){hint}"
        ) from None
    except _READ_ERRORS as exc:
        raise InputError(path, f"truncated or unreadable pixel data ({_short(exc)})") from None
    if pixels.shape != (ds.Rows, ds.Columns):
        raise InputError(path, f"pixel data of shape {pixels.shape}, expected {ds.Rows}×{ds.Columns}")
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    del ds.PixelData
    return values, ds


# --------------------------------------------------------------------------- DICOM SEG


def write_dicom_seg(
    volume: DicomVolume,
    labels: np.ndarray,
    path: str | Path,
    class_names: Sequence[str],
    algorithm: dict[str, Any] | None = None,
    seg_type: str = "binary",
) -> Path:
    """Write ``labels`` (the volume's stored ``I×J×K`` layout) as a DICOM SEG of ``volume``'s series.

    Every class but 0 (background) becomes a segment labelled with its class
    name; the frames reference the source slices they lie on (same
    positions, orientation and pixel spacing). Written atomically.

    Args:
        volume: the source series, as :func:`read_dicom_series` returned it.
        labels: integer class per voxel, ``volume.data``'s shape.
        path: the ``.dcm`` to write.
        class_names: one per class (the checkpoint's).
        algorithm: ``{"name", "version", "parameters"}`` of the segmentation
            algorithm (see :func:`algorithm_from_info`).
        seg_type: ``"binary"`` (one bit-packed frame per slice and segment) or
            ``"labelmap"`` (one frame per slice, the class as value; DICOM 2024).
    """
    if labels.shape != volume.data.shape:
        raise ValueError(f"labels shape {labels.shape} does not match the volume {volume.data.shape}")
    if seg_type not in SEG_TYPES:
        raise ValueError(f"seg_type must be one of {SEG_TYPES}, not {seg_type!r}")
    if len(class_names) < 2:
        raise ValueError("a segmentation needs at least one class besides the background")
    algorithm = algorithm or {"name": "segnet-domains", "version": "unknown"}
    identification, segments = _segment_descriptions(class_names, algorithm)
    if int(labels.max(initial=0)) >= len(class_names) or int(labels.min(initial=0)) < 0:
        raise ValueError(f"labels outside 0..{len(class_names) - 1}")
    dtype = np.uint8 if len(class_names) <= 256 else np.uint16
    frames = np.ascontiguousarray(labels.transpose(2, 1, 0), dtype=dtype)  # slices × rows × columns
    source = volume.datasets[0]
    seg = hd.seg.Segmentation(
        source_images=volume.datasets,
        pixel_array=frames,
        segmentation_type=seg_type.upper(),
        segment_descriptions=segments,
        series_instance_uid=hd.UID(),
        series_number=int(source.get("SeriesNumber") or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="segnet-domains",
        manufacturer_model_name=str(algorithm["name"])[:64],
        software_versions=str(algorithm.get("version", "unknown"))[:64],
        device_serial_number="0",
        series_description=f"SegNet labels of {volume.description}"[:64],
        content_label="SEGNET",
        content_description=f"{identification[0].AlgorithmName} segmentation"[:64],
    )
    path = Path(path)
    with atomic_output(path) as tmp:
        seg.save_as(tmp)
    return path


def _segment_descriptions(
    class_names: Sequence[str], algorithm: dict[str, Any]
) -> tuple[hd.AlgorithmIdentificationSequence, list[hd.seg.SegmentDescription]]:
    """The algorithm's identification and one segment per class but the background (labels ≤ 64 chars)."""
    identification = hd.AlgorithmIdentificationSequence(
        name=str(algorithm["name"])[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=str(algorithm.get("version", "unknown"))[:64],
        source="segnet-domains",
        parameters={k: str(v)[:64] for k, v in (algorithm.get("parameters") or {}).items()},
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=c,
            segment_label=str(class_names[c])[:64],
            segmented_property_category=codes.cid7150.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=identification,
        )
        for c in range(1, len(class_names))
    ]
    return identification, segments


def algorithm_from_info(info: Any) -> dict[str, Any]:
    """The algorithm identification of a checkpoint (:class:`~segnet_domains.checkpoint.ModelInfo`)."""
    prov = dict(info.provenance or {})
    task = prov.get("task")
    name = f"{info.architecture} {task}" if task else str(info.architecture)
    params = {"domain": info.domain, "task": task, "epoch": prov.get("epoch"), "saved": prov.get("saved")}
    return {
        "name": name,
        "version": prov.get("library") or "unknown",
        "parameters": {k: v for k, v in params.items() if v is not None},
    }


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
