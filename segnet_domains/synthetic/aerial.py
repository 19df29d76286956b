"""Land cover and the images made from it: Landsat-like multi-band scenes and an RGB aerial photograph.

* :func:`land_cover` and :func:`landsat_scene` — bare soil, vegetation
  patches, lakes and a river, a town of blocks separated by streets; each
  class with a spectral signature in blue/green/red/near-infrared surface
  reflectance (×10000), texture and sensor noise, inside a rotated swath
  footprint (nodata 0 outside; label :data:`IGNORE`). Classes
  :data:`CLASS_NAMES`. The demo trains, tiles and scores on it; the web page
  offers it as a sample.
* :func:`smooth_land_cover` and :func:`reflectance` — the geo tests' scenes:
  one smooth field cut into soil/water/vegetation/built
  (:data:`SMOOTH_CLASS_NAMES`), per-class reflectance with noise; any size,
  fast, the class map known for nodata and geometry checks.
* :func:`rgb_scene` — an aerial RGB photograph (fields, roads, buildings,
  trees, a pond; :data:`RGB_CLASS_NAMES`): napari's aerial sample.
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

#: :func:`smooth_land_cover`'s classes and their mean reflectance (×10000) in blue, green, red, NIR.
SMOOTH_CLASS_NAMES = ["soil", "water", "vegetation", "built"]
SMOOTH_REFLECTANCE = np.array(
    [
        [900, 1200, 1500, 2200],  # soil
        [600, 800, 500, 300],  # water
        [400, 800, 500, 3500],  # vegetation
        [1400, 1500, 1600, 1800],  # built
    ],
    dtype=np.float64,
)

#: :func:`rgb_scene`'s classes.
RGB_CLASS_NAMES = ["background", "building", "road", "tree", "water"]


def land_cover(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A plausible class map (:data:`CLASS_NAMES`): vegetation patches, lakes, a river, built-up blocks."""
    labels = np.zeros(shape, np.uint8)
    labels[zscore_field(rng, shape, 18) > 0.2] = 1  # vegetation
    town = zscore_field(rng, shape, 40) > 0.9
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blocks = ((yy // 9) % 3 != 0) & ((xx // 9) % 3 != 0)  # blocks separated by streets
    labels[town & blocks] = 3
    labels[town & ~blocks] = 0  # streets: bare/paved
    labels[zscore_field(rng, shape, 25) > 1.5] = 2  # lakes
    river = np.abs(zscore_field(rng, shape, 60)) < 0.05
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


def smooth_land_cover(height: int, width: int, seed: int = 0, smooth: float = 6.0) -> np.ndarray:
    """``H×W`` uint8 classes (:data:`SMOOTH_CLASS_NAMES`) from a smoothed random field (water rarest)."""
    rng = np.random.default_rng(seed)
    field = zscore_field(rng, (height, width), smooth, mode="wrap", eps=1e-9)
    built = zscore_field(rng, (height, width), smooth / 2, mode="wrap", eps=1e-9)
    classes = np.zeros((height, width), np.uint8)
    classes[field > 0.3] = 2
    classes[field < -1.3] = 1
    classes[(built > 1.2) & (classes == 0)] = 3
    return classes


def reflectance(classes: np.ndarray, bands: int = 3, seed: int = 0) -> np.ndarray:
    """``bands×H×W`` uint16 reflectance of a :func:`smooth_land_cover` map, with sensor noise."""
    rng = np.random.default_rng(seed + 1)
    mean = SMOOTH_REFLECTANCE[classes][..., :bands]  # H×W×bands
    img = mean + rng.normal(0, 120, mean.shape)
    return np.clip(np.moveaxis(img, -1, 0), 1, 10000).astype(np.uint16)


def rgb_scene(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic aerial RGB scene and its class map (:data:`RGB_CLASS_NAMES`).

    Returns:
        ``(rgb uint8 H×W×3, classes uint8 H×W)``.
    """
    rng = np.random.default_rng(seed)
    cls = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    pond = ((yy - size * 0.75) / (size * 0.12)) ** 2 + ((xx - size * 0.2) / (size * 0.16)) ** 2 < 1
    cls[pond] = 4
    for _ in range(max(2, size // 40)):
        cy, cx = rng.integers(0, size, 2)
        rad = rng.integers(size // 40 + 2, size // 18 + 4)
        cls[((yy - cy) ** 2 + (xx - cx) ** 2 < rad**2) & (cls == 0)] = 3
    road_w = max(3, size // 40)
    for pos in rng.choice(np.arange(size // 8, size - size // 8), 2, replace=False):
        cls[pos : pos + road_w, :] = 2
        cls[:, pos : pos + road_w] = 2
    for _ in range(max(4, size // 16)):
        h, w = rng.integers(size // 24 + 3, size // 10 + 5, 2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        if (cls[y : y + h, x : x + w] == 0).all():
            cls[y : y + h, x : x + w] = 1
    palette = np.array(
        [[118, 140, 72], [176, 96, 80], [128, 128, 124], [40, 82, 38], [46, 86, 130]], np.float32
    )
    rgb = palette[cls]
    texture = ndimage.gaussian_filter(rng.normal(0, 18, (size, size, 3)).astype(np.float32), (1.5, 1.5, 0))
    rgb = rgb + texture + rng.normal(0, 4, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8), cls
