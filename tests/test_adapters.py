"""2D and volume-slice adapters: layouts, dtypes, normalisation, 2.5D context, orientation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segnet_domains import InputError, Segmenter, SegNet
from segnet_domains.adapters import (
    ImageAdapter,
    Normalizer,
    VolumeSliceAdapter,
    crop,
    pad_to_multiple,
    to_channel_first,
)

rng = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64, bool])
def test_layouts_and_dtypes(dtype: type) -> None:
    chw = (rng.random((3, 21, 17)) * 200).astype(dtype)
    hwc = np.moveaxis(chw, 0, -1)
    np.testing.assert_array_equal(to_channel_first(hwc, 3), chw)
    np.testing.assert_array_equal(to_channel_first(chw, 3), chw)
    grey = chw[0]
    assert to_channel_first(grey, 1).shape == (1, 21, 17)


def test_channel_mismatch_names_both_counts() -> None:
    with pytest.raises(InputError, match="has 4 channels but the checkpoint expects 3"):
        to_channel_first(np.zeros((30, 40, 4)), 3, "rgbn.tif")
    with pytest.raises(InputError, match=r"1 channel\(s\) but the checkpoint expects 3"):
        to_channel_first(np.zeros((30, 40)), 3)


@pytest.mark.parametrize("shape", [(0, 10), (1, 1), (1, 5, 1), (10,), (2, 3, 4, 5)])
def test_rejects_empty_tiny_and_wrong_rank(shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError):
        to_channel_first(np.ones(shape, np.float32), 1, "x.png")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite(bad: float) -> None:
    img = np.ones((8, 8), np.float32)
    img[3, 4] = bad
    with pytest.raises(InputError, match="1 NaN/Inf"):
        to_channel_first(img, 1, "bad.tif")


def test_percentile_normalisation_per_channel() -> None:
    x = np.stack([rng.normal(10, 1, (50, 50)), rng.normal(5000, 300, (50, 50))]).astype(np.float32)
    y = Normalizer({"mode": "percentile", "lower": 1, "upper": 99})(x)
    assert y.dtype == np.float32 and y.min() == 0 and y.max() == 1
    for c in range(2):  # each channel scaled by its own range
        assert 0.3 < float(np.median(y[c])) < 0.7


def test_zscore_with_checkpoint_statistics() -> None:
    x = np.full((2, 4, 4), [[[3.0]], [[10.0]]], np.float32)
    y = Normalizer({"mode": "zscore", "mean": [1.0, 4.0], "std": [2.0, 3.0]})(x)
    np.testing.assert_allclose(y[0], 1.0)
    np.testing.assert_allclose(y[1], 2.0)
    assert Normalizer({"mode": "zscore", "mean": [0], "std": [1]}).is_global
    assert not Normalizer({"mode": "percentile"}).is_global


def test_scale_and_none() -> None:
    x = np.full((1, 3, 3), 255, np.uint8)
    np.testing.assert_allclose(Normalizer({"mode": "scale", "scale": 255})(x), 1.0)
    assert Normalizer(None)(x).dtype == np.float32
    with pytest.raises(ValueError, match="unknown normalization"):
        Normalizer({"mode": "magic"})


@pytest.mark.parametrize("size", [(1, 1), (31, 33), (64, 64), (3, 100)])
def test_pad_and_crop_round_trip(size: tuple[int, int]) -> None:
    x = torch.randn(1, 2, *size)
    padded, orig = pad_to_multiple(x, 32)
    assert padded.shape[-2] % 32 == 0 and padded.shape[-1] % 32 == 0
    assert torch.equal(crop(padded, orig), x)


@pytest.mark.parametrize("size", [(360, 480), (97, 131), (33, 64), (64, 40)])
def test_pad_keeps_channels_last_with_f_pad_values(size: tuple[int, int]) -> None:
    """A channels-last batch is padded in its own layout, to exactly ``F.pad``'s reflected values."""
    import torch.nn.functional as F

    x = torch.randn(2, 3, *size).contiguous(memory_format=torch.channels_last)
    padded, orig = pad_to_multiple(x, 32)
    h, w = size
    want = F.pad(x.contiguous(), (0, -w % 32, 0, -h % 32), mode="reflect")
    assert orig == size and torch.equal(padded, want)
    assert padded.is_contiguous(memory_format=torch.channels_last)
    tiny = torch.randn(1, 3, 5, 40).contiguous(memory_format=torch.channels_last)  # replicate: F.pad
    assert torch.equal(pad_to_multiple(tiny, 32)[0], F.pad(tiny, (0, 24, 0, 27), mode="replicate"))


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("size", [(360, 480), (64, 96), (5, 40)])
def test_pad_casts_to_the_networks_dtype_on_the_way(size: tuple[int, int], channels_last: bool) -> None:
    """``dtype``: ``F.pad``'s values, then cast, in the input's layout; nothing to pad: a cast only."""
    import torch.nn.functional as F

    x = torch.randn(2, 3, *size)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    padded, orig = pad_to_multiple(x, 32, torch.bfloat16)
    h, w = size
    mode = "reflect" if -h % 32 < h and -w % 32 < w else "replicate"
    want = F.pad(x.contiguous(), (0, -w % 32, 0, -h % 32), mode=mode).to(torch.bfloat16)
    assert orig == size and padded.dtype == torch.bfloat16 and torch.equal(padded, want)
    if channels_last and mode == "reflect":
        assert padded.is_contiguous(memory_format=torch.channels_last)
    assert pad_to_multiple(x, 32)[0].dtype == torch.float32  # no dtype: the input's


def test_image_adapter_output() -> None:
    out = ImageAdapter(3, {"mode": "scale", "scale": 255})(np.full((10, 12, 3), 51, np.uint8))
    assert out.shape == (3, 10, 12) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.2)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_volume_adapter_round_trip(axis: int) -> None:
    vol = rng.random((7, 9, 11)).astype(np.float32)
    ad = VolumeSliceAdapter(axis, context=0, normalization=None)
    slices = ad.prepare(vol)
    assert slices.shape[0] == vol.shape[axis]
    np.testing.assert_array_equal(ad.restore(slices), vol)
    proba = np.stack([slices, 1 - slices], axis=1)  # S×K×H×W
    back = ad.restore(proba)
    assert back.shape == (2, *vol.shape)
    np.testing.assert_array_equal(back[0], vol)


def test_context_stacks_neighbours_with_clamped_edges() -> None:
    vol = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 4, 4), np.float32)
    ad = VolumeSliceAdapter(0, context=2, normalization=None)
    batches = list(ad.batches(ad.prepare(vol), batch_size=3))
    assert [b.shape for _, b in batches] == [(3, 5, 4, 4), (2, 5, 4, 4)]
    first = batches[0][1][:, :, 0, 0]
    np.testing.assert_array_equal(first[0], [0, 0, 0, 1, 2])  # slice 0: clamped below
    np.testing.assert_array_equal(first[2], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(batches[1][1][1, :, 0, 0], [2, 3, 4, 4, 4])  # slice 4: clamped above


@pytest.mark.parametrize(
    "normalization",
    [
        {"mode": "percentile", "lower": 1.0, "upper": 99.0},
        {"mode": "scale", "scale": 1000.0},
        {"mode": "zscore", "mean": [300.0], "std": [80.0]},
        {"mode": "zscore"},  # the volume's own statistics: normalised whole, up front
        None,
    ],
)
@pytest.mark.parametrize("dtype", [np.int16, np.float64])
def test_batches_normalised_as_gathered_equal_the_whole_volume_normalised(
    normalization: dict | None, dtype: type
) -> None:
    """``raw_slices`` + each batch normalised: bit for bit ``prepare``'s batches (the volume's statistics)."""
    vol = (rng.normal(300, 80, (13, 11, 9)) * np.linspace(0.5, 1.5, 9)).astype(dtype)  # slices differ
    ad = VolumeSliceAdapter(2, context=1, normalization=normalization)
    eager = list(ad.batches(ad.prepare(vol), batch_size=4))
    slices, normalize = ad.raw_slices(vol)
    lazy = list(ad.batches(slices, 4, normalize))
    assert [sl for sl, _ in lazy] == [sl for sl, _ in eager]
    for (_, a), (_, b) in zip(lazy, eager):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    stateless = normalization is None or normalization.get("mode") != "zscore" or "mean" in normalization
    assert np.shares_memory(slices, vol) == stateless  # no normalised copy of the volume made up front
    if normalization and normalization["mode"] == "percentile":  # statistics of the volume, not the batch
        one = next(ad.batches(slices[:1], 1, normalize))[1]
        assert one.min() > 0.0 or one.max() < 1.0


def test_volume_adapter_rejects_4d_and_bad_axis() -> None:
    with pytest.raises(InputError, match="expected a 3D volume, got 4D"):
        VolumeSliceAdapter(0, 0, None).prepare(np.zeros((4, 5, 6, 2)), "dwi.nii.gz")
    with pytest.raises(InputError, match="axis 3 is out of range"):
        VolumeSliceAdapter(3, 0, None).prepare(np.zeros((4, 5, 6)))
    squeezed = VolumeSliceAdapter(0, 0, None).prepare(np.zeros((4, 5, 6, 1)))
    assert squeezed.shape == (4, 5, 6)


def test_predict_volume_keeps_shape_and_orientation() -> None:
    """The label at voxel v comes from the slice containing v, whatever the axis."""
    model = SegNet(1, 2, features=(4, 8, 8, 8, 8))
    seg = Segmenter(model, device="cpu", precision="fp32")
    vol = rng.random((6, 20, 24)).astype(np.float32)
    for axis in (0, 1, 2):
        labels = seg.predict_volume(vol, axis=axis)
        assert labels.shape == vol.shape
    # transposing the volume and the axis together transposes the labels
    a = seg.predict_volume(vol, axis=0)
    b = seg.predict_volume(np.transpose(vol, (1, 2, 0)), axis=2)
    np.testing.assert_array_equal(np.transpose(a, (1, 2, 0)), b)


def test_predict_volume_with_context_model() -> None:
    model = SegNet(3, 2, features=(4, 8, 8, 8, 8))
    from segnet_domains.checkpoint import make_info

    seg = Segmenter(model, device="cpu", info=make_info(model, context=1, slice_axis=1))
    labels, proba = seg.predict_volume(rng.random((5, 6, 34)).astype(np.float32), return_proba=True)
    assert labels.shape == (5, 6, 34) and proba.shape == (2, 5, 6, 34)
    np.testing.assert_allclose(proba.sum(0), 1.0, atol=1e-4)
    with pytest.raises(InputError, match="expects 3"):
        Segmenter(model, device="cpu").predict_volume(np.zeros((5, 6, 7)))
