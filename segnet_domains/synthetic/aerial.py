"""Land cover and the images made from it: one class map, three renderers.

:func:`land_cover` draws the map (:data:`CLASS_NAMES`): bare soil,
vegetation patches, lakes and a river, a town of blocks separated by streets;
``scale`` sets the size of its patches. Each renderer shows it as one sensor would:

* :func:`landsat_scene` — Landsat-like 4-band surface reflectance (×10000,
  uint16, blue/green/red/NIR :data:`SIGNATURES`), texture, sensor noise, inside
  a rotated swath footprint (nodata 0 outside; label :data:`IGNORE`). The demo
  trains, tiles and scores on it; the web page offers it as a sample. Its
  arithmetic and random draws are kept exactly, so the demo's figures do not
  move (``tests/synthetic/test_aerial.py`` pins their statistics).
* :func:`reflectance` — the same signatures in any number of bands with
  sensor noise and no footprint: the geo tests' scenes (they cut their own).
* :func:`rgb_scene` — an aerial RGB photograph (uint8, :data:`RGB_PALETTE`):
  napari's aerial sample.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segnet_domains.synthetic.fields import footprint, zscore_field

#: :func:`land_cover`'s classes, their colours, and the bands of :func:`landsat_scene`.
CLASS_NAMES = ["bare soil", "vegetation", "water", "built-up"]
CLASS_COLORS = [[200, 170, 120], [40, 150, 40], [30, 90, 200], [220, 40, 40]]
BAND_NAMES = ["blue", "green", "red", "nir"]
#: Label value outside the swath (nodata of the label rasters).
IGNORE = 255
#: Mean surface reflectance (×10000) of :data:`CLASS_NAMES` in blue, green, red, NIR.
SIGNATURES = np.array(
    [[900, 1100, 1400, 2200], [400, 800, 500, 3800], [700, 600, 400, 150], [1300, 1400, 1500, 1700]],
    np.float32,
)

#: Mean colour (RGB) of :data:`CLASS_NAMES` in an aerial photograph.
RGB_PALETTE = np.array([[176, 150, 112], [58, 104, 48], [46, 86, 130], [150, 92, 80]], np.float32)


def land_cover(rng: np.random.Generator, shape: tuple[int, int], scale: float = 1.0) -> np.ndarray:
    """A plausible class map (:data:`CLASS_NAMES`): vegetation patches, lakes, a river, built-up blocks.

    Args:
        rng: random generator.
        shape: ``(H, W)``.
        scale: size of the patches, lakes and towns relative to the demo's 30 m scenes (1); the
            town's blocks stay 18 pixels with 9-pixel streets.

    Returns:
        ``H×W`` uint8 class indices.
    """
    labels = np.zeros(shape, np.uint8)
    labels[zscore_field(rng, shape, 18 * scale) > 0.2] = 1  # vegetation
    town = zscore_field(rng, shape, 40 * scale) > 0.9
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blocks = ((yy // 9) % 3 != 0) & ((xx // 9) % 3 != 0)  # blocks separated by streets
    labels[town & blocks] = 3
    labels[town & ~blocks] = 0  # streets: bare/paved
    labels[zscore_field(rng, shape, 25 * scale) > 1.5] = 2  # lakes
    river = np.abs(zscore_field(rng, shape, 60 * scale)) < 0.05
    labels[ndimage.binary_dilation(river, iterations=2)] = 2
    return labels


def landsat_scene(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(bands uint16 4×H×W with 0 = nodata, labels uint8 H×W with 255 = nodata)`` of :func:`land_cover`."""
    labels = land_cover(rng, shape)
    bands = SIGNATURES[labels].transpose(2, 0, 1)  # 4×H×W
    texture = 1.0 + 0.12 * zscore_field(rng, shape, 3)[None]
    bands = bands * texture + rng.normal(0, 60, bands.shape)
    bands = ndimage.gaussian_filter(bands, (0, 0.6, 0.6))
    h, w = shape  # rotated swath footprint: the corners are outside the acquisition
    inside = footprint(h, w, rng.uniform(8, 14), half=0.46, centre=(h / 2, w / 2))
    out = np.clip(bands, 1, 65535).astype(np.uint16)
    out[:, ~inside] = 0
    labels = labels.copy()
    labels[~inside] = IGNORE
    return out, labels


def reflectance(classes: np.ndarray, bands: int = 3, seed: int = 0) -> np.ndarray:
    """``bands×H×W`` uint16 surface reflectance (×10000) of a :func:`land_cover` map, with sensor noise.

    The first ``bands`` of :data:`SIGNATURES` per pixel plus Gaussian noise (120),
    clipped to 1–10000: no texture, blur or footprint, so a test knows every value's class.
    """
    rng = np.random.default_rng(seed + 1)
    mean = SIGNATURES[classes][..., :bands]  # H×W×bands
    img = mean + rng.normal(0, 120, mean.shape)
    return np.clip(np.moveaxis(img, -1, 0), 1, 10000).astype(np.uint16)


def rgb_scene(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An aerial RGB photograph of a :func:`land_cover` map: :data:`RGB_PALETTE`, texture and noise.

    Returns:
        ``(rgb uint8 H×W×3, classes uint8 H×W)``.
    """
    rng = np.random.default_rng(seed)
    classes = land_cover(rng, (size, size))
    texture = ndimage.gaussian_filter(rng.normal(0, 18, (size, size, 3)).astype(np.float32), (1.5, 1.5, 0))
    rgb = RGB_PALETTE[classes] + texture + rng.normal(0, 4, (size, size, 3)).astype(np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8), classes
