"""One land-cover map, three renderers: the demo's Landsat scenes unchanged, each true to its classes."""

from __future__ import annotations

import numpy as np
import pytest

from segnet_domains.synthetic import aerial
from segnet_domains.synthetic.aerial import IGNORE, RGB_PALETTE, SIGNATURES
from tests.data.fingerprint import fingerprint


def test_demo_landsat_scenes_are_unchanged() -> None:
    """``landsat_pairs(seed=3)`` and ``(seed=55)`` at ``make demo-quick``'s 160×160, as before.

    Figures (band statistics, pixels per class, 255 = outside the footprint) taken before the
    land-cover generators were merged: if they change, the demo's figures change too. A
    tolerance, not a checksum, for the reason given in ``tests/data/fingerprint.py``.
    """
    expected = [
        ([1103.669639, 981.641637, 0.0, 436.0, 935.0, 1446.0, 4297.0], [11712, 6621, 1324, 1404, 4539]),
        ([1042.140928, 906.399971, 0.0, 427.0, 896.0, 1395.0, 4153.0], [11614, 4895, 3481, 1371, 4239]),
        ([1026.517842, 1008.459684, 0.0, 393.0, 789.0, 1335.0, 4285.0], [8601, 7751, 3573, 1360, 4315]),
    ]
    rng = np.random.default_rng(3)
    scenes = [aerial.landsat_scene(rng, (160, 160)) for _ in range(2)]
    scenes.append(aerial.landsat_scene(np.random.default_rng(55), (160, 160)))
    for (bands, labels), (want, counts) in zip(scenes, expected, strict=True):
        np.testing.assert_allclose(fingerprint(bands), want, rtol=1e-5)
        got = np.bincount(labels.ravel(), minlength=256)[[0, 1, 2, 3, IGNORE]]
        np.testing.assert_allclose(got, counts, atol=2)  # a pixel on a class edge may flip


def test_landsat_bands_follow_the_classes_inside_the_footprint() -> None:
    bands, labels = aerial.landsat_scene(np.random.default_rng(8), (150, 170))
    assert bands.shape == (4, 150, 170) and bands.dtype == np.uint16 and labels.dtype == np.uint8
    outside = labels == IGNORE
    assert outside.any() and (bands[:, outside] == 0).all() and (bands[:, ~outside] > 0).all()
    nir_red = {k: float(np.median(bands[3][labels == k] / bands[2][labels == k])) for k in range(4)}
    assert nir_red[1] > 3 and nir_red[2] < 1  # vegetation reflects NIR, water absorbs it


@pytest.mark.parametrize("shape", [(64, 64), (97, 131)])
def test_land_cover_has_every_class_and_scales(shape: tuple[int, int]) -> None:
    classes = aerial.land_cover(np.random.default_rng(0), shape, scale=1 / 3)
    assert classes.shape == shape and classes.dtype == np.uint8
    assert set(np.unique(classes).tolist()) <= set(range(len(aerial.CLASS_NAMES)))
    default = aerial.land_cover(np.random.default_rng(1), shape)
    np.testing.assert_array_equal(default, aerial.land_cover(np.random.default_rng(1), shape, scale=1.0))
    coarse = aerial.land_cover(np.random.default_rng(0), (128, 128), scale=2.0)
    fine = aerial.land_cover(np.random.default_rng(0), (128, 128), scale=0.25)
    edges = [float((np.diff(c.astype(int), axis=1) != 0).mean()) for c in (coarse, fine)]
    assert edges[0] < edges[1]  # larger patches: fewer class boundaries


def test_reflectance_is_the_signature_plus_noise() -> None:
    classes = aerial.land_cover(np.random.default_rng(2), (120, 140), scale=1 / 3)
    img = aerial.reflectance(classes, bands=3, seed=2)
    assert img.shape == (3, 120, 140) and img.dtype == np.uint16
    for k in np.unique(classes):
        np.testing.assert_allclose(img[:, classes == k].mean(axis=1), SIGNATURES[k, :3], atol=40)
    assert aerial.reflectance(classes, bands=4, seed=2).shape == (4, 120, 140)


def test_rgb_scene_colours_its_land_cover() -> None:
    rgb, classes = aerial.rgb_scene(96, seed=3)
    assert rgb.shape == (96, 96, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(classes, aerial.land_cover(np.random.default_rng(3), (96, 96)))
    for k in np.unique(classes):
        np.testing.assert_allclose(rgb[classes == k].mean(axis=0), RGB_PALETTE[k], atol=8)
