"""File-to-file prediction jobs behind ``predict-image`` and ``predict-volume``.

Each job reads with its domain's IO, runs the shared :class:`Segmenter`, and
writes the result with the input's geometry under a temporary name that is
renamed when complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segnet_domains.inference import Segmenter
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
from segnet_domains.io.safety import FileOutput, is_image_file, is_nifti_file
from segnet_domains.medical.nifti import NIFTI_SUFFIXES, read_volume, write_like


def image_outputs(out: str | Path, overlay_path: str | Path | None = None) -> list[FileOutput]:
    """What :func:`predict_image_file` writes, for :func:`~segnet_domains.io.safety.check_outputs`."""
    outputs = [FileOutput(out, "label image", "--out", LABEL_FORMATS, LOSSY_FORMATS, ours=is_image_file)]
    if overlay_path is not None:
        outputs.append(
            FileOutput(overlay_path, "overlay picture", "--overlay", PICTURE_FORMATS, ours=is_image_file)
        )
    return outputs


def volume_outputs(out: str | Path) -> list[FileOutput]:
    """What :func:`predict_volume_file` writes, for :func:`~segnet_domains.io.safety.check_outputs`."""
    return [FileOutput(out, "NIfTI mask", "--out", NIFTI_SUFFIXES, ours=is_nifti_file)]


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


def predict_volume_file(
    segmenter: Segmenter,
    volume_path: str | Path,
    out: str | Path,
    axis: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Segment a NIfTI volume slice by slice; write a mask aligned voxel for voxel.

    The volume is reoriented to RAS+ for the network, so ``axis`` is anatomical
    (0: sagittal, 1: coronal, 2: axial) whatever the stored orientation, and
    the mask is written back in the input's orientation with its affine and
    header.

    Returns:
        The labels in the stored orientation (same shape as the input).
    """
    volume = read_volume(volume_path)
    ras_labels = segmenter.predict_volume(
        volume.to_ras(), axis=axis, progress=progress, source=str(volume_path)
    )
    labels = volume.from_ras(ras_labels)
    write_like(volume, labels, out)
    return labels
