"""File-to-file prediction jobs behind ``predict-image`` and ``predict-volume``.

Each job reads with its domain's IO, runs the shared :class:`Segmenter`, and
writes the result with the input's geometry under a temporary name that is
renamed when complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segnet_domains.inference import Segmenter
from segnet_domains.io.images import overlay, read_image, write_labels, write_png
from segnet_domains.medical.nifti import read_volume, write_like


def predict_image_file(
    segmenter: Segmenter, image_path: str | Path, out: str | Path, overlay_path: str | Path | None = None
) -> np.ndarray:
    """Segment a PNG/JPEG/TIFF image; write the label image (and an overlay PNG).

    Returns:
        The ``H×W`` labels.
    """
    image = read_image(image_path, keep_alpha=segmenter.info.in_channels == 4)  # RGB + thermal PNG
    labels = segmenter.predict(image, source=str(image_path))
    write_labels(out, labels)
    if overlay_path is not None:
        write_png(overlay_path, overlay(image, labels, segmenter.info.class_colors))
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
