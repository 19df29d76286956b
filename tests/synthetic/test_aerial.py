"""One land-cover map, three renderers: the demo's Landsat scenes unchanged, each true to its classes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from segnet_domains.synthetic import aerial
from segnet_domains.synthetic.aerial import IGNORE, RGB_PALETTE, SIGNATURES


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def test_demo_landsat_scenes_are_unchanged() -> None:
    """``landsat_pairs(seed=3)`` and ``(seed=55)`` at ``make demo-quick``'s 160×160, bit for bit.

    Checksums taken before the land-cover generators were merged: if they change,
    the demo's figures change too.
    """
    rng = np.random.default_rng(3)
    got = [tuple(map(_digest, aerial.landsat_scene(rng, (160, 160)))) for _ in range(2)]
    assert got == [("79760cd113f879e1", "11e2c869482d0ac3"), ("9f6ca7927ef22a84", "38069f1db966583b")]
    bands, labels = aerial.landsat_scene(np.random.default_rng(55), (160, 160))
    assert (_digest(bands), _digest(labels)) == ("e8e81861f47e9c3e", "0bfd0bc11538a85d")


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
