"""One entry for volumes whatever their format: NIfTI files or DICOM series in; NIfTI or DICOM SEG out.

:func:`read_any_volume` returns a :class:`~segnet_domains.medical.nifti.Volume`
for both (a :class:`~segnet_domains.medical.dicom.DicomVolume` for DICOM), so
``predict-volume``, the napari reader and anything else that segments a
volume call one reader and treat the result the same way. Labels go back
with :func:`write_volume_labels`: NIfTI aligned voxel for voxel (any input),
or a DICOM SEG referencing the source series (DICOM input only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segnet_domains.errors import InputError
from segnet_domains.medical.dicom import (
    DicomVolume,
    algorithm_from_info,
    is_dicom,
    is_seg_output,
    read_dicom_series,
    write_dicom_seg,
)
from segnet_domains.medical.nifti import Volume, is_nifti, read_volume, write_like

VOLUME_INPUTS = "a NIfTI file (.nii, .nii.gz), a DICOM series folder or one file of the series"


def is_volume_path(path: str | Path) -> bool:
    """True for NIfTI names and for DICOM files or folders holding DICOM files."""
    return is_nifti(path) or is_dicom(path)


def read_any_volume(path: str | Path, series_uid: str | None = None) -> Volume:
    """Read a NIfTI volume or a DICOM series (``series_uid`` picks one of several in a folder).

    Raises:
        InputError: the path is neither, or what :func:`read_volume` /
            :func:`~segnet_domains.medical.dicom.read_dicom_series` refuse.
    """
    path = Path(path)
    if is_nifti(path):
        if series_uid is not None:
            raise InputError(path, "--series applies to DICOM input only")
        return read_volume(path)
    if path.is_dir() or is_dicom(path):
        return read_dicom_series(path, series_uid)
    if not path.exists():
        raise InputError(path, "file not found")
    raise InputError(path, f"not a volume: expected {VOLUME_INPUTS}")


def check_labels_output(source: str | Path, out: str | Path) -> None:
    """Refuse a DICOM SEG output (``.dcm``) for a source that is not DICOM, before any work.

    Raises:
        InputError: one line naming the output.
    """
    if is_seg_output(out) and (is_nifti(source) or not is_dicom(source)):
        raise InputError(
            out, "DICOM SEG output needs a DICOM series as input; write a .nii.gz mask for this volume"
        )


def write_volume_labels(
    volume: Volume, labels: np.ndarray, out: str | Path, info: Any = None, seg_type: str = "binary"
) -> Path:
    """Write labels in ``volume``'s stored layout: DICOM SEG for ``.dcm``, NIfTI otherwise.

    Args:
        volume: what :func:`read_any_volume` returned.
        labels: integer classes, ``volume.data``'s shape.
        out: ``.nii``/``.nii.gz`` or ``.dcm``.
        info: the checkpoint's :class:`~segnet_domains.checkpoint.ModelInfo`
            (class names and provenance for DICOM SEG).
        seg_type: ``"binary"`` or ``"labelmap"`` (DICOM SEG only).
    """
    if not is_seg_output(out):
        return write_like(volume, labels, out)
    if not isinstance(volume, DicomVolume):
        raise InputError(out, "DICOM SEG output needs a DICOM series as input; write a .nii.gz mask instead")
    if info is None:
        raise ValueError("DICOM SEG output needs the checkpoint info (class names, provenance)")
    return write_dicom_seg(volume, labels, out, info.class_names, algorithm_from_info(info), seg_type)
