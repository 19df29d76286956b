"""Crowd annotations and counts as files: UCF-QNRF's ``img_NNNN_ann.mat`` and plain counts.

UCF-QNRF (Idrees et al., ECCV 2018) ships ``Train/`` and ``Test/`` folders of
``img_NNNN.jpg`` with ``img_NNNN_ann.mat`` beside each: a MATLAB v5 file whose
``annPoints`` is an ``N×2`` array of head positions ``(x, y)`` in pixels
(MATLAB's 1-based convention: the centre of the top-left pixel is ``(1, 1)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segnet_domains.errors import InputError

#: Suffixes of the files a count can be read from.
COUNT_SUFFIXES = (".mat", ".txt", ".npy")


def read_head_points(path: str | Path) -> np.ndarray:
    """Head positions of a UCF-QNRF ``*_ann.mat`` as ``N×2`` float64 ``(x, y)``, 0-based.

    MATLAB's 1-based coordinates are shifted by one so that ``(0, 0)`` is the
    centre of the top-left pixel, as numpy indexes it.

    Raises:
        InputError: unreadable, not a MATLAB file, no ``annPoints``, or not ``N×2``.
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        mat = loadmat(path)
    except (MatReadError, ValueError, OSError, TypeError) as exc:
        raise InputError(path, f"not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from None
    if "annPoints" not in mat:
        keys = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise InputError(path, f"has no 'annPoints' (variables: {keys})")
    points = np.asarray(mat["annPoints"], dtype=np.float64)
    if points.size == 0:
        return np.zeros((0, 2))
    if points.ndim != 2 or points.shape[1] != 2:
        raise InputError(path, f"annPoints has shape {points.shape}, expected N×2 (x, y)")
    if not np.isfinite(points).all():
        raise InputError(path, "annPoints holds NaN/Inf")
    return points - 1.0


def read_count(path: str | Path) -> float:
    """The count a file holds: ``*_ann.mat`` (heads), ``.txt`` (a number) or ``.npy`` (summed).

    Raises:
        InputError: an unknown kind, or a file that holds no finite count.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return float(len(read_head_points(path)))
    if not path.is_file():
        raise InputError(path, "file not found")
    if suffix == ".txt":
        words = path.read_text(errors="replace").split()
        try:
            value = float(words[0]) if len(words) == 1 else None
        except ValueError:
            value = None
        if value is None or not np.isfinite(value):
            raise InputError(path, "expected one number (the count)")
        return value
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(path, f"not a readable .npy array ({exc})") from None
        if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
            raise InputError(path, "density map holds NaN/Inf or is not numeric")
        return float(arr.sum(dtype=np.float64))
    raise InputError(path, f"cannot read a count from a {suffix or 'suffix-less'} file (.mat, .txt, .npy)")
