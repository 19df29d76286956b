"""One anatomy, three contrasts: the demo's T1w unchanged, each contrast's tissue order, masks in brain."""

from __future__ import annotations

import numpy as np
import pytest

from segnet_domains.synthetic import brain
from segnet_domains.synthetic.brain import FLAIR, LESION, PHANTOM, T1W, TISSUES
from tests.data.fingerprint import fingerprint


def test_demo_t1w_volumes_are_unchanged() -> None:
    """The demo's and the web sample's subjects, as before the generators were merged.

    ``atlas_t1w(seed=1, voxel_mm=4)`` (``make demo-quick``'s first two subjects) and
    ``atlas_t1w(seed=99, voxel_mm=2)`` (the demo's held-out subject, the web page's sample).
    Figures taken from the generator before it became :func:`brain.head_volume`: if they
    change, the demo's figures change too.
    """
    rng = np.random.default_rng(1)
    shape, _ = brain.mni_grid(4.0)
    expected = [
        ([34.702064, 33.374439, 1.484429, 7.493832, 11.974369, 63.095029, 104.130136], 182),
        ([33.325337, 33.79426, 1.878183, 7.697265, 11.398194, 64.625187, 110.550349], 231),
    ]
    for want, lesion_voxels in expected:
        vol, mask = brain.t1w_brain(rng, shape)
        np.testing.assert_allclose(fingerprint(vol), want, rtol=1e-5)
        assert int(mask.sum()) == lesion_voxels
    shape, _ = brain.mni_grid(2.0)
    vol, mask = brain.t1w_brain(np.random.default_rng(99), shape)
    assert (vol.shape, vol.dtype, mask.dtype) == ((99, 117, 95), np.float32, np.uint8)
    want = [34.810372, 34.82899, 1.585322, 7.486301, 11.373197, 63.776081, 106.094378]
    np.testing.assert_allclose(fingerprint(vol), want, rtol=1e-5)
    assert int(mask.sum()) == 1795


def _tissue_means(contrast: brain.Contrast, seed: int = 4) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    head = brain.head_anatomy(rng, (64, 76, 62), contrast, lesions=4)
    vol = brain.render(rng, head, contrast)
    present = [(k, name) for k, name in enumerate(TISSUES) if (head.tissues == k).any()]
    return {name: float(vol[head.tissues == k].mean()) for k, name in present}


def test_t1w_lesions_are_dark_and_white_matter_bright() -> None:
    m = _tissue_means(T1W)
    assert m["lesion"] < 0.5 * m["white matter"] and m["lesion"] < m["grey matter"]
    assert m["white matter"] > m["grey matter"] > m["ventricles"]


def test_flair_white_matter_darker_than_grey_and_lesions_bright() -> None:
    m = _tissue_means(FLAIR)
    assert m["white matter"] < 0.85 * m["grey matter"]
    assert m["lesion"] > 1.5 * m["white matter"] and m["lesion"] > m["grey matter"]
    assert m["ventricles"] < 0.5 * m["white matter"]  # CSF suppressed (thin ventricles: blurred)


def test_phantom_is_one_brightness_with_dark_lesions() -> None:
    rng = np.random.default_rng(0)
    head = brain.head_anatomy(rng, brain.PHANTOM_SHAPE, PHANTOM, lesions=2)
    vol = brain.render(rng, head, PHANTOM)
    tissue = head.brain & (head.tissues != LESION)
    assert abs(vol[tissue].mean() - 600) < 5 and vol[tissue].std() < 30  # noise only: no anatomy shows
    assert vol[head.tissues == LESION].mean() < 250 and vol[~head.brain].mean() < 60


@pytest.mark.parametrize("shape", [(17, 23, 11), (40, 48, 36), (33, 40, 25)])
@pytest.mark.parametrize("contrast", [T1W, FLAIR, PHANTOM], ids=lambda c: c.name)
def test_masks_lie_in_the_brain(contrast: brain.Contrast, shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(2)
    head = brain.head_anatomy(rng, shape, contrast, lesions=3)
    assert head.tissues.shape == shape and head.tissues.dtype == np.uint8
    assert not (head.mask.astype(bool) & ~head.brain).any()
    assert head.brain.mean() < 0.5 and 0 < head.mask.sum() < 0.5 * head.brain.sum()
    vol, mask = brain.head_volume(np.random.default_rng(2), shape, contrast, lesions=3)
    assert vol.shape == mask.shape == shape and (vol.dtype, mask.dtype) == (np.float32, np.uint8)
    np.testing.assert_array_equal(mask, head.mask)  # same draws, same anatomy
    assert vol.min() >= 0 and set(np.unique(mask).tolist()) <= {0, 1}


def test_each_preset_is_the_same_model() -> None:
    """The named generators are :func:`brain.head_volume` in their contrast, nothing of their own."""
    shape = (30, 36, 28)
    for made, contrast, rng in (
        (brain.t1w_brain(np.random.default_rng(5), shape, 2), T1W, np.random.default_rng(5)),
        (brain.flair_head(shape, 2, seed=5), FLAIR, np.random.default_rng(5)),
        (brain.phantom_brain(np.random.default_rng(5), shape, 2), PHANTOM, np.random.default_rng(5)),
    ):
        for a, b in zip(made, brain.head_volume(rng, shape, contrast, 2)):
            np.testing.assert_array_equal(a, b)
    # the same head under every contrast: only the lesions differ (their size, and FLAIR's site)
    heads = [brain.head_anatomy(np.random.default_rng(6), shape, c, 2).tissues for c in (T1W, FLAIR, PHANTOM)]
    healthy = np.logical_and.reduce([t != LESION for t in heads])
    assert healthy.mean() > 0.9
    for other in heads[1:]:
        np.testing.assert_array_equal(other[healthy], heads[0][healthy])
