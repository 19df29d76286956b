"""File-to-file prediction jobs behind ``predict-image`` and ``predict-volume``.

Each job reads with its domain's IO, runs the shared :class:`Segmenter`, and
writes the result with the input's geometry under a temporary name that is
renamed when complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segnet_domains.errors import InputError
from segnet_domains.inference import Segmenter
from segnet_domains.io.atomic import atomic_output
from segnet_domains.io.images import (
    LABEL_FORMATS,
    LOSSY_FORMATS,
    PICTURE_FORMATS,
    TIFF_SUFFIXES,
    overlay,
    read_image,
    write_labels,
    write_picture,
)
from segnet_domains.io.safety import FileOutput, is_image_file, is_nifti_file, sniff
from segnet_domains.medical.dicom import is_dicom_file
from segnet_domains.medical.nifti import NIFTI_SUFFIXES
from segnet_domains.medical.volumes import check_labels_output, read_any_volume, write_volume_labels

#: What ``predict-image --count`` writes: the count (``.txt``) or the density map (``.npy``).
COUNT_FORMATS = (".txt", ".npy")


def check_count_output(out: str | Path) -> None:
    """Refuse a count output that is neither ``.txt`` nor ``.npy`` (before any work).

    Raises:
        InputError: one line naming the output.
    """
    if Path(out).suffix.lower() not in COUNT_FORMATS:
        raise InputError(out, "a count is written as .txt (the number) or .npy (the density map)")


def is_count_file(path: Path) -> bool:
    """A ``.npy`` array or a text file holding one number: what :func:`count_image_file` writes."""
    if sniff(path, 6) == b"\x93NUMPY":
        return True
    try:
        float(Path(path).read_text()[:64].strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return True


def image_outputs(
    out: str | Path, overlay_path: str | Path | None = None, count: bool = False
) -> list[FileOutput]:
    """What :func:`predict_image_file` (or, ``count``, :func:`count_image_file`) writes, for
    :func:`~segnet_domains.io.safety.check_outputs`."""
    if count:
        return [FileOutput(out, "count", "--out", COUNT_FORMATS, ours=is_count_file)]
    outputs = [FileOutput(out, "label image", "--out", LABEL_FORMATS, LOSSY_FORMATS, ours=is_image_file)]
    if overlay_path is not None:
        outputs.append(
            FileOutput(overlay_path, "overlay picture", "--overlay", PICTURE_FORMATS, ours=is_image_file)
        )
    return outputs


def volume_outputs(out: str | Path) -> list[FileOutput]:
    """What :func:`predict_volume_file` writes (a NIfTI mask, or DICOM SEG), for
    :func:`~segnet_domains.io.safety.check_outputs`."""
    what = "DICOM SEG" if str(out).lower().endswith(".dcm") else "NIfTI mask"
    formats = (*NIFTI_SUFFIXES, ".dcm")
    return [FileOutput(out, what, "--out", formats, ours=lambda p: is_nifti_file(p) or is_dicom_file(p))]


def predict_image_file(
    segmenter: Segmenter, image_path: str | Path, out: str | Path, overlay_path: str | Path | None = None
) -> np.ndarray:
    """Segment a PNG/JPEG/TIFF image; write the label image (and an overlay PNG).

    Returns:
        The ``H×W`` labels.
    """
    image = read_image(image_path, keep_alpha=True)
    rgba = Path(image_path).suffix.lower() not in TIFF_SUFFIXES and image.ndim == 3 and image.shape[-1] == 4
    if rgba and segmenter.info.in_channels == 3:
        image = image[..., :3]  # RGBA picture, RGB model: the alpha channel is not a band
    labels = segmenter.predict(image, source=str(image_path))
    write_labels(out, labels)
    if overlay_path is not None:
        write_picture(overlay_path, overlay(image, labels, segmenter.info.class_colors))
    return labels


def count_image_file(
    segmenter: Segmenter, image_path: str | Path, out: str | Path | None = None, tile_size: int | None = None
) -> float:
    """Count people in an image with a density-head checkpoint; write the count or the density map.

    A grey image given to a 3-band model is repeated to RGB (UCF-QNRF has a
    few grey photographs; training does the same). Big images are tiled
    (:meth:`~segnet_domains.inference.Segmenter.predict_density`).

    Args:
        segmenter: a density (counting) model.
        image_path: PNG/JPEG/TIFF.
        out: ``.txt`` (the count, one number) or ``.npy`` (the ``H×W`` float32
            density map, persons per pixel); ``None`` writes nothing.
        tile_size: tile above this size (default: the checkpoint's).

    Returns:
        The count: the sum of the density map.

    Raises:
        InputError: a segmentation checkpoint, an unusable image, an output of another kind.
    """
    if out is not None:
        check_count_output(out)
    image = read_image(image_path)
    if image.ndim == 2 and segmenter.info.in_channels == 3:
        image = np.repeat(image[..., None], 3, axis=-1)
    density = segmenter.predict_density(image, source=str(image_path), tile_size=tile_size)
    count = float(density.sum(dtype=np.float64))
    if out is not None:
        with atomic_output(Path(out)) as tmp:
            if Path(out).suffix.lower() == ".npy":
                with open(tmp, "wb") as fh:
                    np.save(fh, density)
            else:
                tmp.write_text(f"{count:.6f}\n")
    return count


def predict_volume_file(
    segmenter: Segmenter,
    volume_path: str | Path,
    out: str | Path,
    axis: int | None = None,
    progress: bool = True,
    series_uid: str | None = None,
    seg_type: str = "binary",
) -> np.ndarray:
    """Segment a NIfTI volume or a DICOM series slice by slice; write a mask aligned voxel for voxel.

    The volume is reoriented to RAS+ for the network, so ``axis`` is anatomical
    (0: sagittal, 1: coronal, 2: axial) whatever the stored orientation, and
    the mask is written back in the input's orientation: as NIfTI with the
    input's affine (and header), or, for ``out`` ending in ``.dcm`` and a DICOM
    input, as a DICOM SEG referencing the source series.

    Args:
        series_uid: the DICOM series to read when a folder holds several.
        seg_type: ``"binary"`` or ``"labelmap"`` DICOM SEG.

    Returns:
        The labels in the stored orientation (same shape as the input).
    """
    check_labels_output(volume_path, out)
    volume = read_any_volume(volume_path, series_uid)
    ras_labels = segmenter.predict_volume(
        volume.to_ras(), axis=axis, progress=progress, source=str(volume_path)
    )
    labels = volume.from_ras(ras_labels)
    write_volume_labels(volume, labels, out, segmenter.info, seg_type)
    return labels
