"""2D image files: read PNG/JPEG/GIF/TIFF, write label images and overlays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

from segnet_domains.errors import InputError
from segnet_domains.io.atomic import atomic_output
from segnet_domains.io.safety import check_claimed_size, check_input

TIFF_SUFFIXES = (".tif", ".tiff")
#: Formats a label image (class index per pixel) is written in.
LABEL_FORMATS = (".png", ".tif", ".tiff")
#: Lossy formats refused for label images, with the reason.
LOSSY_FORMATS = {
    s: "lossy compression would change class indices; use .png or .tif" for s in (".jpg", ".jpeg", ".webp")
}
#: Formats a picture (overlay) is written in.
PICTURE_FORMATS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def read_image(path: str | Path, keep_alpha: bool = False) -> np.ndarray:
    """Read a 2D image as ``H×W`` or ``H×W×C`` in its own dtype.

    TIFFs are read with tifffile (any band count and dtype, band-first stacks
    are returned as ``C×H×W`` and left to the adapter); other formats with
    imageio. The alpha channel of RGBA PNG/GIF/JPEG is dropped unless
    ``keep_alpha`` (then a 4-channel picture is reported as 4 channels; a 4-band PNG such as MFN's
    RGB + thermal is read whole). The header's claimed size is checked against the file before decoding.

    Raises:
        InputError: missing, a folder/FIFO/device, unreadable, not an image, or
            a header claiming more pixels than the file can hold.
    """
    path = check_input(path, "image")
    _check_image_header(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            arr = tifffile.imread(path)
        else:
            arr = iio.imread(path, index=0 if path.suffix.lower() == ".gif" else None)
    except Exception as exc:  # noqa: BLE001 - every reader error means "not an image"
        raise InputError(path, f"not a readable image ({type(exc).__name__}: {exc})".rstrip()) from None
    arr = np.asarray(arr)
    if not keep_alpha and arr.ndim == 3 and arr.shape[-1] == 4 and path.suffix.lower() not in TIFF_SUFFIXES:
        arr = arr[..., :3]
    if arr.ndim not in (2, 3):
        raise InputError(path, f"expected a 2D image, got an array of shape {arr.shape}")
    return arr


def _check_image_header(path: Path) -> None:
    """Compare the pixels a TIFF/PNG header claims with the file's size, before decoding.

    PNG data is deflate-compressed (bounded ratio); TIFF strips may be raw
    (exact size) or compressed (memory bound only). Other formats rely on
    Pillow's own decompression-bomb check.
    """
    with path.open("rb") as fh:
        head = fh.read(33)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        depth, color = head[24], head[25]
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color, 4)
        claimed = height * (width * channels * max(depth, 8) // 8 + 1)
        check_claimed_size(path, claimed, description=f"a {width}×{height} PNG", compression="deflate")
    elif path.suffix.lower() in TIFF_SUFFIXES:
        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                shape, dtype = tif.series[0].shape, tif.series[0].dtype
                compressed = int(page.compression) != 1
                offset = min(page.dataoffsets) if page.dataoffsets else 0
        except Exception:  # noqa: BLE001 - left to the reader, which names the problem
            return
        claimed = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
        text = f"{'×'.join(map(str, shape))} {np.dtype(dtype).name} pixels"
        check_claimed_size(
            path, claimed, description=text, compression="tiff" if compressed else None, offset=offset
        )


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


def write_picture(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an ``H×W×3`` uint8 picture atomically in the format its extension names.

    Raises:
        InputError: an extension that is not one of :data:`PICTURE_FORMATS`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PICTURE_FORMATS:
        raise InputError(
            path, f"unknown picture format {suffix or '(none)'}; use {', '.join(PICTURE_FORMATS)}"
        )
    with atomic_output(path) as tmp:
        if suffix in TIFF_SUFFIXES:
            tifffile.imwrite(tmp, np.ascontiguousarray(rgb), photometric="rgb", compression="zlib")
        else:
            iio.imwrite(tmp, np.ascontiguousarray(rgb), extension=suffix)
    return path


def write_labels(path: str | Path, labels: np.ndarray) -> Path:
    """Write a label image (class index per pixel): PNG, or TIFF for ``.tif``.

    Raises:
        InputError: a lossy or unknown format (labels must survive exactly), or
            more than 256 classes for PNG.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in LOSSY_FORMATS:
        raise InputError(path, f"cannot write labels as {suffix}: {LOSSY_FORMATS[suffix]}")
    if suffix not in LABEL_FORMATS:
        raise InputError(
            path, f"unknown label image format {suffix or '(none)'}; use {', '.join(LABEL_FORMATS)}"
        )
    labels = labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16)
    if path.suffix.lower() in TIFF_SUFFIXES:
        with atomic_output(path) as tmp:
            tifffile.imwrite(tmp, labels, compression="zlib")
        return path
    if labels.dtype != np.uint8:
        raise InputError(path, "more than 256 classes cannot be written as PNG; use .tif")
    return write_png(path, labels)
