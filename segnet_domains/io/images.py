"""2D image files: read PNG/JPEG/GIF/TIFF, write label images and overlays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

from segnet_domains.errors import InputError
from segnet_domains.io.atomic import atomic_output

TIFF_SUFFIXES = (".tif", ".tiff")


def read_image(path: str | Path, keep_alpha: bool = False) -> np.ndarray:
    """Read a 2D image as ``H×W`` or ``H×W×C`` in its own dtype.

    TIFFs are read with tifffile (any band count and dtype, band-first stacks
    are returned as ``C×H×W`` and left to the adapter); other formats with
    imageio. The alpha channel of RGBA PNG/GIF/JPEG is dropped unless
    ``keep_alpha`` (a 4-band PNG such as MFN's RGB + thermal).

    Raises:
        InputError: missing, unreadable or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            arr = tifffile.imread(path)
        else:
            arr = iio.imread(path, index=0 if path.suffix.lower() == ".gif" else None)
    except Exception as exc:  # noqa: BLE001 - every reader error means "not an image"
        raise InputError(path, f"not a readable image ({type(exc).__name__}: {exc})".rstrip()) from None
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 4 and not keep_alpha and path.suffix.lower() not in TIFF_SUFFIXES:
        arr = arr[..., :3]
    if arr.ndim not in (2, 3):
        raise InputError(path, f"expected a 2D image, got an array of shape {arr.shape}")
    return arr


def to_display_rgb(image: np.ndarray) -> np.ndarray:
    """``H×W×3`` uint8 for viewing: first three bands (or grey), 1–99 % percentile stretch."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] < img.shape[-1] and img.shape[0] <= 16:
        img = np.moveaxis(img, 0, -1)
    if img.ndim == 2:
        img = img[..., None]
    img = img[..., :3] if img.shape[-1] >= 3 else np.repeat(img[..., :1], 3, axis=-1)
    finite = np.isfinite(img)
    lo, hi = np.percentile(img[finite], [1, 99]) if finite.any() else (0.0, 1.0)
    out = np.clip((np.nan_to_num(img) - lo) / max(hi - lo, 1e-6), 0, 1)
    return (out * 255).round().astype(np.uint8)


def overlay(
    image: np.ndarray, labels: np.ndarray, colors: Sequence[Sequence[int]], alpha: float = 0.5
) -> np.ndarray:
    """Blend class colours over the image (class 0 left uncoloured); returns ``H×W×3`` uint8."""
    rgb = to_display_rgb(image).astype(np.float32)
    palette = np.asarray(colors, dtype=np.float32)
    labels = np.asarray(labels)
    fg = labels > 0
    rgb[fg] = (1 - alpha) * rgb[fg] + alpha * palette[labels[fg]]
    return rgb.round().astype(np.uint8)


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write a PNG atomically (labels as uint8 grey, overlays as RGB)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        iio.imwrite(tmp, np.ascontiguousarray(array), extension=".png")
    return path


def write_labels(path: str | Path, labels: np.ndarray) -> Path:
    """Write a label image (class index per pixel): PNG, or TIFF for ``.tif``."""
    path = Path(path)
    labels = labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16)
    if path.suffix.lower() in TIFF_SUFFIXES:
        with atomic_output(path) as tmp:
            tifffile.imwrite(tmp, labels, compression="zlib")
        return path
    if labels.dtype != np.uint8:
        raise InputError(path, "more than 256 classes cannot be written as PNG; use .tif")
    return write_png(path, labels)
