"""An ATLAS R2.0-style set: synthetic T1w brains with stroke lesions, in the real BIDS layout.

Each subject is a 197×233×189 float32 volume on the MNI152NLin2009aSym 1 mm
grid (the ATLAS R2.0 space and affine, qform/sform code 4 = MNI): scalp,
grey and white matter with smooth texture, ventricles, a multiplicative bias
field and noise; one or two irregular T1-hypointense lesions in one
hemisphere, with the 0/1 lesion mask beside the image::

    ROOT/ATLAS_2/Training/R001/sub-r001s001/ses-1/anat/
        sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz
        sub-r001s001_ses-1_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

#: The ATLAS R2.0 / MNI152NLin2009aSym 1 mm grid.
MNI_SHAPE = (197, 233, 189)
MNI_AFFINE = np.array([[1.0, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]])
SPACE = "space-MNI152NLin2009aSym"


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: int, sigma: float) -> np.ndarray:
    """Smooth random field in [-1, 1]: coarse noise, blurred, upsampled to ``shape``."""
    small = [max(2, s // coarse) for s in shape]
    field = ndimage.gaussian_filter(rng.normal(size=small), sigma)
    field = ndimage.zoom(field, [s / m for s, m in zip(shape, small)], order=1)
    field = field[tuple(slice(0, s) for s in shape)]
    return (field / (np.abs(field).max() + 1e-6)).astype(np.float32)


def _ellipsoid(grid: list[np.ndarray], centre, radii) -> np.ndarray:
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii))


def brain_volume(
    rng: np.random.Generator, shape: tuple[int, int, int] = MNI_SHAPE, lesions: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic T1w brain and its lesion mask, voxel order RAS like the MNI template.

    Args:
        rng: random generator (the subject's anatomy and lesions).
        shape: grid size; proportions follow the MNI brain whatever the size.
        lesions: number of lesions (default 2 or 3 at random).

    Returns:
        ``(t1w float32, mask uint8)``.
    """
    s = np.array(shape, np.float32)
    grid = list(np.ogrid[: shape[0], : shape[1], : shape[2]])
    grid = [g.astype(np.float32) for g in grid]
    jitter = rng.uniform(0.95, 1.05, 3)
    centre = s * np.array([0.5, 0.53, 0.45])
    head = _ellipsoid(grid, centre, s * np.array([0.44, 0.46, 0.46]) * jitter)
    brain_d = _ellipsoid(grid, centre, s * np.array([0.37, 0.40, 0.38]) * jitter)
    texture = _smooth_field(rng, shape, 8, 1.5)
    gyri = _smooth_field(rng, shape, 3, 1.0)
    wm_d = brain_d + 0.2 * texture + 0.35 * gyri
    vent = np.minimum(
        _ellipsoid(grid, centre + s * [-0.04, 0.02, 0.04], s * [0.03, 0.12, 0.06]),
        _ellipsoid(grid, centre + s * [0.04, 0.02, 0.04], s * [0.03, 0.12, 0.06]),
    )
    t1 = np.full(shape, 8.0, np.float32)
    t1[head < 1] = 95.0  # scalp and skull marrow
    t1[(head < 0.86) & (head >= 0.78)] = 20.0  # skull (dark on T1)
    t1[brain_d < 1] = 62.0  # grey matter and CSF mix
    t1[(brain_d < 1) & (gyri > 0.45)] = 30.0  # sulcal CSF
    t1[wm_d < 0.6] = 105.0  # white matter
    t1[vent < 1] = 22.0  # ventricles
    brain = brain_d < 1

    mask = np.zeros(shape, np.uint8)
    n = int(rng.integers(2, 4)) if lesions is None else lesions
    side = rng.choice([-1, 1])
    for _ in range(n):
        c = centre + s * np.array(
            [side * rng.uniform(0.08, 0.22), rng.uniform(-0.2, 0.2), rng.uniform(-0.1, 0.15)]
        )
        r = rng.uniform(0.03, 0.065) * s.mean()
        blob = np.zeros(shape, bool)
        for _ in range(3):  # irregular: a union of jittered spheres
            cc = c + rng.normal(0, r * 0.5, 3)
            blob |= _ellipsoid(grid, cc, r * rng.uniform(0.6, 1.1, 3)) < 1
        mask[blob & brain & (vent >= 1.3)] = 1
    t1 = np.where(mask > 0, 24.0 + 5 * texture, t1)  # chronic stroke: CSF-like hypointensity
    t1 = ndimage.gaussian_filter(t1, 0.8)
    bias = 1.0 + 0.08 * _smooth_field(rng, shape, 24, 1.0)
    t1 = t1 * bias + rng.normal(0, 3.0, shape).astype(np.float32)
    return np.clip(t1, 0, None).astype(np.float32), mask


def mni_grid(voxel_mm: float = 1.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the MNI152NLin2009aSym box at ``voxel_mm`` (1 mm: 197×233×189)."""
    shape = tuple(int(np.ceil(s / voxel_mm)) for s in MNI_SHAPE)
    affine = MNI_AFFINE.copy()
    affine[:3, :3] *= voxel_mm
    return shape, affine  # type: ignore[return-value]


def _save(array: np.ndarray, path: Path, dtype: type, affine: np.ndarray) -> None:
    img = nib.Nifti1Image(array.astype(dtype), affine)
    img.set_qform(affine, code=4)
    img.set_sform(affine, code=4)
    img.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)


def write_atlas(
    root: str | Path, subjects: int = 4, seed: int = 0, voxel_mm: float = 1.0
) -> list[tuple[Path, Path]]:
    """Write ``subjects`` ATLAS-style subjects under ``root``; returns ``[(t1w, mask)]``.

    ``voxel_mm`` > 1 gives a coarser MNI grid (same field of view) for quick runs.
    """
    rng = np.random.default_rng(seed)
    shape, affine = mni_grid(voxel_mm)
    out = []
    for i in range(1, subjects + 1):
        sub = f"sub-r001s{i:03d}"
        anat = Path(root) / "ATLAS_2" / "Training" / "R001" / sub / "ses-1" / "anat"
        stem = f"{sub}_ses-1_{SPACE}"
        t1w, mask = brain_volume(rng, shape)
        img_path, mask_path = anat / f"{stem}_T1w.nii.gz", anat / f"{stem}_label-L_desc-T1lesion_mask.nii.gz"
        _save(t1w, img_path, np.float32, affine)
        _save(mask, mask_path, np.uint8, affine)
        out.append((img_path, mask_path))
    return out
