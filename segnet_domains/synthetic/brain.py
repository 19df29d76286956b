"""Head and brain volumes with lesion masks, voxel order RAS: one anatomy, a contrast per sequence.

One model of a head, :func:`head_anatomy`, proportioned like the MNI brain
whatever the grid size: scalp, skull, grey matter with sulcal CSF, white
matter shaped by smooth texture, two ventricles, and one to a few irregular
lesions (unions of jittered spheres). The subject's shape is jittered and
every random draw comes from the caller's generator, so a seed gives the same
head on any machine.

How it looks is data: a :class:`Contrast` gives each tissue its intensity,
says where lesions lie and how big they are, and sets the partial-volume blur,
the multiplicative bias field and the noise; :func:`head_volume` renders the
anatomy in it. Three contrasts are declared:

* :data:`T1W` — ATLAS R2.0-like T1w: bright white matter, T1-hypointense
  (chronic stroke) lesions in one hemisphere. :func:`t1w_brain` on the
  MNI152NLin2009aSym grid (:func:`mni_grid`) is what the demo trains and scores
  on (``make demo``) and the web page's MRI sample; its arithmetic and random
  draws are kept exactly, so the demo's figures do not move
  (``tests/synthetic/test_brain.py`` pins their statistics).
* :data:`FLAIR` — white matter darker than grey, CSF suppressed, bright
  white-matter lesions in both hemispheres. :func:`flair_head` is napari's MRI
  sample; the napari tests' lesion model trains on it.
* :data:`PHANTOM` — the same head with every tissue at one brightness: a
  bright brain outline, large dark lesions, white noise, no blur or bias.
  :func:`phantom_brain` at :data:`PHANTOM_SHAPE` is the smallest volume a
  layout, orientation or training test needs (the tests' miniature ATLAS
  trees), and a tiny model learns its lesions in seconds.

All renderings return ``(volume float32, mask uint8)`` with 1 on lesion voxels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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

#: The tissue labels of :attr:`Head.tissues`, in painting order (a later tissue covers an earlier one).
TISSUES = (
    "background", "scalp", "skull", "grey matter", "sulcal CSF", "white matter", "ventricles", "lesion"
)  # fmt: skip
BACKGROUND, SCALP, SKULL, GREY, CSF, WHITE, VENTRICLES, LESION = range(len(TISSUES))


@dataclass(frozen=True)
class Contrast:
    """How one MRI sequence shows the head of :func:`head_anatomy`, and the lesions it is used to show.

    Declared as data so that a new look is a new record, not a new generator;
    the anatomy and every random draw stay the same.

    Attributes:
        name: the sequence.
        background, scalp, skull, grey, csf, white, ventricles: intensity of
            each tissue of :data:`TISSUES` (``scalp`` includes the skull's marrow;
            ``csf`` is the sulcal CSF between gyri).
        lesion: intensity of lesion voxels, plus ``lesion_texture`` times the
            anatomy's smooth texture (in [-1, 1]).
        lesion_texture: see ``lesion``.
        lesion_radius: ``(low, high)`` of a lesion's radius, as a fraction of
            the grid's mean size.
        lesion_site: where lesions may lie: anywhere in the brain (stroke) or in
            the white matter only.
        bilateral: lesions in both hemispheres (else all on one side).
        blur: Gaussian sigma in voxels of the partial-volume blur (0: none).
        bias: amplitude of the smooth multiplicative bias field.
        noise: standard deviation of the Gaussian noise.
    """

    name: str
    background: float
    scalp: float
    skull: float
    grey: float
    csf: float
    white: float
    ventricles: float
    lesion: float
    lesion_texture: float = 0.0
    lesion_radius: tuple[float, float] = (0.03, 0.065)
    lesion_site: Literal["brain", "white matter"] = "brain"
    bilateral: bool = False
    blur: float = 0.8
    bias: float = 0.08
    noise: float = 3.0

    def intensities(self) -> np.ndarray:
        """float32 intensity per label of :data:`TISSUES` (the lesion's without its texture)."""
        values = (self.background, self.scalp, self.skull, self.grey, self.csf, self.white, self.ventricles)
        return np.array([*values, self.lesion], np.float32)


#: ATLAS-like T1w (scanner units about 0–130): chronic stroke lesions as dark as CSF, in one hemisphere.
T1W = Contrast(
    "T1w", background=8.0, scalp=95.0, skull=20.0, grey=62.0, csf=30.0, white=105.0, ventricles=22.0,
    lesion=24.0, lesion_texture=5.0,
)  # fmt: skip
#: FLAIR (about 0–1000): white matter darker than grey, CSF dark, bright white-matter lesions on both sides.
FLAIR = Contrast(
    "FLAIR", background=0.0, scalp=350.0, skull=60.0, grey=550.0, csf=90.0, white=420.0, ventricles=80.0,
    lesion=950.0, lesion_texture=30.0, lesion_radius=(0.05, 0.09), lesion_site="white matter",
    bilateral=True, bias=0.1, noise=12.0,
)  # fmt: skip
#: A T1-like phantom: one brightness for the whole brain, large dark lesions, white noise only.
PHANTOM = Contrast(
    "phantom", background=40.0, scalp=40.0, skull=40.0, grey=600.0, csf=600.0, white=600.0,
    ventricles=600.0, lesion=220.0, lesion_radius=(0.12, 0.18), blur=0.0, bias=0.0, noise=25.0,
)  # fmt: skip


@dataclass(frozen=True)
class Head:
    """One subject's anatomy: what :func:`head_anatomy` returns and :func:`render` paints.

    Attributes:
        tissues: uint8 label per voxel (:data:`TISSUES`; lesions included).
        brain: bool, the brain (grey and white matter, CSF, ventricles, lesions).
        texture: float32 smooth field in [-1, 1] (the tissue texture inside lesions).
    """

    tissues: np.ndarray
    brain: np.ndarray
    texture: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """uint8 lesion mask (1 on lesion voxels)."""
        return (self.tissues == LESION).astype(np.uint8)


def mni_grid(voxel_mm: float = 1.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the MNI152NLin2009aSym box at ``voxel_mm`` (1 mm: 197×233×189)."""
    shape = tuple(int(np.ceil(s / voxel_mm)) for s in MNI_SHAPE)
    affine = MNI_AFFINE.copy()
    affine[:3, :3] *= voxel_mm
    return shape, affine  # type: ignore[return-value]


def head_anatomy(
    rng: np.random.Generator,
    shape: tuple[int, int, int] = MNI_SHAPE,
    contrast: Contrast = T1W,
    lesions: int | None = None,
) -> Head:
    """A head proportioned like the MNI brain on any grid, with ``contrast``'s lesions in it.

    Args:
        rng: random generator (the subject's shape, texture and lesions).
        shape: grid size (:func:`mni_grid` gives the MNI box at a voxel size).
        contrast: where lesions lie and how big they are (its intensities are not used here).
        lesions: number of lesions (default 2 or 3 at random).
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
    brain = brain_d < 1
    tissues = np.full(shape, BACKGROUND, np.uint8)
    tissues[head < 1] = SCALP
    tissues[(head < 0.86) & (head >= 0.78)] = SKULL
    tissues[brain] = GREY
    tissues[brain & (gyri > 0.45)] = CSF
    tissues[wm_d < 0.6] = WHITE
    tissues[vent < 1] = VENTRICLES
    site = brain & (vent >= 1.3)
    if contrast.lesion_site == "white matter":
        site &= tissues == WHITE
    n = int(rng.integers(2, 4)) if lesions is None else lesions
    tissues[_lesions(rng, grid, centre, s, n, contrast) & site] = LESION
    return Head(tissues, brain, texture)


def _lesions(
    rng: np.random.Generator,
    grid: list[np.ndarray],
    centre: np.ndarray,
    s: np.ndarray,
    n: int,
    contrast: Contrast,
) -> np.ndarray:
    """bool: ``n`` irregular lesions (unions of three jittered spheres) off the midline, before clipping."""
    out = np.zeros(np.broadcast_shapes(*(g.shape for g in grid)), bool)
    side = rng.choice([-1, 1])
    for _ in range(n):
        if contrast.bilateral:
            side = rng.choice([-1, 1])
        c = centre + s * np.array(
            [side * rng.uniform(0.08, 0.22), rng.uniform(-0.2, 0.2), rng.uniform(-0.1, 0.15)]
        )
        r = rng.uniform(*contrast.lesion_radius) * s.mean()
        for _ in range(3):
            cc = c + rng.normal(0, r * 0.5, 3)
            out |= ellipsoid(grid, cc, r * rng.uniform(0.6, 1.1, 3)) < 1
    return out


def render(rng: np.random.Generator, head: Head, contrast: Contrast) -> np.ndarray:
    """``head`` as ``contrast`` shows it: tissue intensities, blur, bias field and noise (float32, ≥ 0)."""
    vol = contrast.intensities()[head.tissues]
    lesion = contrast.lesion + contrast.lesion_texture * head.texture
    vol = np.where(head.tissues == LESION, lesion, vol)
    vol = ndimage.gaussian_filter(vol, contrast.blur)
    bias = 1.0 + contrast.bias * smooth_field(rng, head.tissues.shape, 24, 1.0)
    vol = vol * bias + rng.normal(0, contrast.noise, head.tissues.shape).astype(np.float32)
    return np.clip(vol, 0, None).astype(np.float32)


def head_volume(
    rng: np.random.Generator,
    shape: tuple[int, int, int] = MNI_SHAPE,
    contrast: Contrast = T1W,
    lesions: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A head in ``contrast`` and its lesion mask: :func:`head_anatomy` then :func:`render`.

    Args:
        rng: random generator (anatomy, lesions, bias field and noise, in that order).
        shape: grid size.
        contrast: :data:`T1W`, :data:`FLAIR`, :data:`PHANTOM` or your own.
        lesions: number of lesions (default 2 or 3 at random).

    Returns:
        ``(volume float32, mask uint8)``.
    """
    head = head_anatomy(rng, shape, contrast, lesions)
    return render(rng, head, contrast), head.mask


def t1w_brain(
    rng: np.random.Generator, shape: tuple[int, int, int] = MNI_SHAPE, lesions: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """An ATLAS-like T1w brain and its stroke-lesion mask (:data:`T1W`): the demo's and the web page's data.

    Returns:
        ``(t1w float32, mask uint8)``.
    """
    return head_volume(rng, shape, T1W, lesions)


def flair_head(
    shape: tuple[int, int, int] = (72, 88, 72), lesions: int = 6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A FLAIR head (values about 0–1000, :data:`FLAIR`) and its mask of bright white-matter lesions.

    Args:
        shape: voxels along (R, A, S).
        lesions: number of lesions in the white matter.
        seed: random seed (same seed, same volume).

    Returns:
        ``(volume float32, mask uint8)``.
    """
    return head_volume(np.random.default_rng(seed), shape, FLAIR, lesions)


def phantom_brain(
    rng: np.random.Generator, shape: tuple[int, int, int] = PHANTOM_SHAPE, lesions: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The head in :data:`PHANTOM` contrast: bright brain, large dark lesions (layout and training tests)."""
    return head_volume(rng, shape, PHANTOM, lesions)
