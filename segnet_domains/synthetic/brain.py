"""Head and brain volumes with lesion masks, voxel order RAS.

Three anatomies, each a documented model rather than a copy of another:

* :func:`t1w_brain` — an ATLAS R2.0-like T1w brain on the MNI152NLin2009aSym
  grid: scalp, skull, grey and white matter with smooth texture, sulcal CSF,
  ventricles, a multiplicative bias field and noise; one to three irregular,
  T1-hypointense (chronic stroke) lesions in one hemisphere. The demo trains
  and scores on it (``make demo``), the web page offers it as a sample.
* :func:`flair_head` — a FLAIR-like head: white matter darker than grey,
  dark ventricles, bright ellipsoidal white-matter lesions, a linear bias
  field and smoothed noise. napari's MRI sample; the napari tests' lesion
  model trains on it.
* :func:`phantom_brain` — a bright ellipsoid "brain" with dark spherical
  lesions and white noise: the smallest volume a layout, orientation or
  training test needs (the miniature ATLAS layouts of the tests).

All return ``(volume float32, mask uint8)`` with 1 on lesion voxels. A seed
gives the same arrays on any machine; the trained test fixtures and the
demo's figures depend on that, so each model's arithmetic is kept as tuned.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segnet_domains.synthetic.fields import ellipsoid, smooth_field

#: The ATLAS R2.0 / MNI152NLin2009aSym 1 mm grid.
MNI_SHAPE = (197, 233, 189)
MNI_AFFINE = np.array([[1.0, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]])

#: Size of :func:`phantom_brain`'s volume, and an MNI-like RAS affine for it (1 mm, origin near the centre).
PHANTOM_SHAPE = (32, 40, 24)
PHANTOM_AFFINE = np.array(
    [[1.0, 0, 0, -16.0], [0, 1.0, 0, -22.0], [0, 0, 1.0, -10.0], [0, 0, 0, 1]], dtype=np.float64
)


def mni_grid(voxel_mm: float = 1.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the MNI152NLin2009aSym box at ``voxel_mm`` (1 mm: 197×233×189)."""
    shape = tuple(int(np.ceil(s / voxel_mm)) for s in MNI_SHAPE)
    affine = MNI_AFFINE.copy()
    affine[:3, :3] *= voxel_mm
    return shape, affine  # type: ignore[return-value]


def t1w_brain(
    rng: np.random.Generator, shape: tuple[int, int, int] = MNI_SHAPE, lesions: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic T1w brain and its stroke-lesion mask, proportioned like the MNI brain whatever the size.

    Args:
        rng: random generator (the subject's anatomy and lesions).
        shape: grid size (:func:`mni_grid` gives the MNI box at a voxel size).
        lesions: number of lesions (default 2 or 3 at random).

    Returns:
        ``(t1w float32, mask uint8)``.
    """
    s = np.array(shape, np.float32)
    grid = [g.astype(np.float32) for g in np.ogrid[: shape[0], : shape[1], : shape[2]]]
    jitter = rng.uniform(0.95, 1.05, 3)
    centre = s * np.array([0.5, 0.53, 0.45])
    head = ellipsoid(grid, centre, s * np.array([0.44, 0.46, 0.46]) * jitter)
    brain_d = ellipsoid(grid, centre, s * np.array([0.37, 0.40, 0.38]) * jitter)
    texture = smooth_field(rng, shape, 8, 1.5)
    gyri = smooth_field(rng, shape, 3, 1.0)
    wm_d = brain_d + 0.2 * texture + 0.35 * gyri
    vent = np.minimum(
        ellipsoid(grid, centre + s * [-0.04, 0.02, 0.04], s * [0.03, 0.12, 0.06]),
        ellipsoid(grid, centre + s * [0.04, 0.02, 0.04], s * [0.03, 0.12, 0.06]),
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
            blob |= ellipsoid(grid, cc, r * rng.uniform(0.6, 1.1, 3)) < 1
        mask[blob & brain & (vent >= 1.3)] = 1
    t1 = np.where(mask > 0, 24.0 + 5 * texture, t1)  # chronic stroke: CSF-like hypointensity
    t1 = ndimage.gaussian_filter(t1, 0.8)
    bias = 1.0 + 0.08 * smooth_field(rng, shape, 24, 1.0)
    t1 = t1 * bias + rng.normal(0, 3.0, shape).astype(np.float32)
    return np.clip(t1, 0, None).astype(np.float32), mask


def flair_head(
    shape: tuple[int, int, int] = (72, 88, 72), lesions: int = 6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A FLAIR-like head volume (values about 0–1000) and its mask of bright white-matter lesions.

    Args:
        shape: voxels along (R, A, S).
        lesions: number of ellipsoidal lesions in the white matter.
        seed: random seed (same seed, same volume).

    Returns:
        ``(volume float32, mask uint8)``.
    """
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    r = np.sqrt(sum(g**2 for g in grids))
    r_head = np.sqrt((grids[0] / 0.85) ** 2 + (grids[1] / 0.92) ** 2 + (grids[2] / 0.85) ** 2)
    vol = np.zeros(shape, np.float32)
    vol[(r_head < 1.0) & (r_head >= 0.9)] = 0.35  # skull/scalp
    brain = r_head < 0.88
    vol[brain] = 0.55  # grey matter
    wm = r_head < 0.7
    vol[wm] = 0.42  # white matter (FLAIR: darker than grey)
    vent = (np.abs(grids[0]) < 0.12) & (np.sqrt((grids[1] / 0.35) ** 2 + (grids[2] / 0.2) ** 2) < 1)
    vol[vent] = 0.08  # ventricles: dark CSF
    mask = np.zeros(shape, np.uint8)
    placed = 0
    while placed < lesions:
        c = rng.uniform(-0.55, 0.55, 3)
        if np.sqrt((c**2).sum()) > 0.6 or (abs(c[0]) < 0.2 and abs(c[2]) < 0.25):
            continue
        radii = rng.uniform(0.09, 0.18, 3)
        blob = ellipsoid(grids, c, radii) < 1.0
        mask[blob & wm & ~vent] = 1
        placed += 1
    vol[mask == 1] = 0.95
    bias = 1.0 + 0.15 * grids[0] - 0.1 * grids[2] + 0.05 * r
    noise = ndimage.gaussian_filter(rng.normal(0, 0.04, shape).astype(np.float32), 0.7)
    vol = ndimage.gaussian_filter(vol, 0.8) * bias + noise
    return (np.clip(vol, 0, None) * 1000).astype(np.float32), mask


def phantom_brain(
    rng: np.random.Generator, shape: tuple[int, int, int] = PHANTOM_SHAPE, lesions: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A T1-like phantom: a bright ellipsoid brain, dark spherical lesions inside it, white noise."""
    grid = [g.astype(np.float32) for g in np.ogrid[: shape[0], : shape[1], : shape[2]]]
    centre = (np.array(shape, np.float32) - 1) / 2
    radii = np.array(shape, np.float32) * 0.42
    brain = ellipsoid(grid, centre, radii) < 1
    mask = np.zeros(shape, np.uint8)
    for _ in range(lesions):
        c = centre + rng.uniform(-0.45, 0.45, 3) * radii
        r = rng.uniform(4.0, 6.5)
        mask[ellipsoid(grid, c, (r, r, r)) < 1] = 1
    mask &= brain
    vol = np.where(brain, 600.0, 40.0) - 380.0 * mask + rng.normal(0, 25, shape)
    return np.clip(vol, 0, None).astype(np.float32), mask
