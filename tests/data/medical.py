"""Generators of miniature ATLAS R2.0 and RITE layouts: real names, formats and encodings, tiny sizes.

``make_atlas(root)`` writes BIDS subjects (gzip NIfTI, MNI-like RAS affine,
qform/sform code 4) with a dark lesion blob in a bright "brain"; one subject
has no mask (inference only). ``make_rite(root)`` writes ``training``/``test``
splits of RGB TIFF fundus images with drawn vessels, colour-coded ``av`` PNGs
and field-of-view GIFs.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import tifffile
from skimage.draw import disk, line

ATLAS_SPACE = "space-MNI152NLin2009aSym"
ATLAS_SHAPE = (32, 40, 24)
#: MNI-like RAS affine (1 mm voxels; the origin near the brain's centre).
MNI_AFFINE = np.array(
    [[1.0, 0, 0, -16.0], [0, 1.0, 0, -22.0], [0, 0, 1.0, -10.0], [0, 0, 0, 1]], dtype=np.float64
)


def atlas_names(site: str, subject: str) -> tuple[str, str, str]:
    """``(relative anat folder, T1w name, lesion mask name)`` of an ATLAS R2.0 subject."""
    folder = f"ATLAS_2/Training/{site}/{subject}/ses-1/anat"
    stem = f"{subject}_ses-1_{ATLAS_SPACE}"
    return folder, f"{stem}_T1w.nii.gz", f"{stem}_label-L_desc-T1lesion_mask.nii.gz"


def atlas_volume(
    rng: np.random.Generator, shape: tuple[int, int, int] = ATLAS_SHAPE, lesions: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A T1-like volume (bright ellipsoid brain, dark lesion blobs, noise) and its 0/1 lesion mask."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")).astype(np.float32)
    centre = (np.array(shape, np.float32) - 1) / 2
    radii = np.array(shape, np.float32) * 0.42
    brain = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) < 1
    mask = np.zeros(shape, np.uint8)
    for _ in range(lesions):
        c = centre + rng.uniform(-0.45, 0.45, 3) * radii
        r = rng.uniform(4.0, 6.5)
        mask[(((grid - c[:, None, None, None]) / r) ** 2).sum(0) < 1] = 1
    mask &= brain
    vol = np.where(brain, 600.0, 40.0) - 380.0 * mask + rng.normal(0, 25, shape)
    return np.clip(vol, 0, None).astype(np.float32), mask


def _nifti(array: np.ndarray, affine: np.ndarray, dtype: type) -> nib.Nifti1Image:
    img = nib.Nifti1Image(array.astype(dtype), affine)
    img.set_qform(affine, code=4)
    img.set_sform(affine, code=4)
    return img


def make_atlas(
    root: Path,
    subjects: int = 5,
    unlabeled: int = 1,
    seed: int = 0,
    shape: tuple[int, int, int] = ATLAS_SHAPE,
) -> list[tuple[Path, Path | None]]:
    """Write ``subjects`` labelled subjects plus ``unlabeled`` without a mask; returns (image, mask) paths."""
    rng = np.random.default_rng(seed)
    out: list[tuple[Path, Path | None]] = []
    for i in range(subjects + unlabeled):
        site, subject = f"R{1 + i // 3:03d}", f"sub-r{1 + i // 3:03d}s{1 + i:03d}"
        folder, t1_name, mask_name = atlas_names(site, subject)
        anat = root / folder
        anat.mkdir(parents=True, exist_ok=True)
        vol, mask = atlas_volume(rng, shape, lesions=1 + i % 2)
        nib.save(_nifti(vol, MNI_AFFINE, np.float32), anat / t1_name)
        mask_path = None
        if i < subjects:
            mask_path = anat / mask_name
            nib.save(_nifti(mask, MNI_AFFINE, np.uint8), mask_path)
        out.append((anat / t1_name, mask_path))
    return out


# --------------------------------------------------------------------------- RITE

RITE_SIZE = (64, 72)  # H, W
RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


def _thick_line(canvas: np.ndarray, r0: int, c0: int, r1: int, c1: int, colour: tuple[int, ...]) -> None:
    h, w = canvas.shape[:2]
    for dr, dc in ((0, 0), (1, 0), (0, 1), (1, 1)):
        rr, cc = line(r0 + dr, c0 + dc, r1 + dr, c1 + dc)
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        canvas[rr[ok], cc[ok]] = colour


def rite_scene(rng: np.random.Generator, size: tuple[int, int] = RITE_SIZE) -> tuple[np.ndarray, ...]:
    """``(image H×W×3 uint8, av H×W×3 uint8, fov H×W uint8)`` with arteries, veins, a crossing, unknowns."""
    h, w = size
    av = np.zeros((h, w, 3), np.uint8)
    for colour in (RED, BLUE, RED, BLUE):
        r0, r1 = rng.integers(0, h, 2)
        _thick_line(av, int(r0), 0, int(r1), w - 1, colour)
    for _ in range(2):  # a few unlabeled (white) vessel pieces
        c = int(rng.integers(4, w - 4))
        _thick_line(av, 0, c, h // 3, c + int(rng.integers(-3, 4)), WHITE)
    both = (av == RED).all(-1) & np.roll((av == BLUE).all(-1), 1, axis=0)
    av[both] = GREEN
    fov = np.zeros((h, w), np.uint8)
    rr, cc = disk(((h - 1) / 2, (w - 1) / 2), min(h, w) * 0.55, shape=(h, w))
    fov[rr, cc] = 255
    vessel = av.any(-1)
    base = np.array([200, 90, 40], np.float32)
    img = base + rng.normal(0, 8, (h, w, 3))
    img[vessel] -= np.array([90, 50, 20], np.float32)
    img[(av == RED).all(-1)] += np.array([30, 0, 0], np.float32)  # arteries a bit redder
    img[fov == 0] = 0
    return np.clip(img, 0, 255).astype(np.uint8), av, fov


def make_rite(
    root: Path, train: int = 4, test: int = 2, seed: int = 1, size: tuple[int, int] = RITE_SIZE
) -> Path:
    """Write ``training`` and ``test`` splits in RITE's layout; returns ``root``."""
    rng = np.random.default_rng(seed)
    for split, n, first in (("training", train, 21), ("test", test, 1)):
        for sub in ("images", "av", "mask"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            stem = f"{first + i:02d}_{split}"
            img, av, fov = rite_scene(rng, size)
            tifffile.imwrite(root / split / "images" / f"{stem}.tif", img, photometric="rgb")
            iio.imwrite(root / split / "av" / f"{stem}.png", av)
            iio.imwrite(root / split / "mask" / f"{stem}_mask.gif", fov)
    return root
