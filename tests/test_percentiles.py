"""Linear-time percentiles equal numpy's, and training and inference normalise real files alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImaged

from segnet_domains.adapters import ImageAdapter, Normalizer, VolumeSliceAdapter
from segnet_domains.geo.normalize import SceneNormalizer
from segnet_domains.io.images import read_image
from segnet_domains.medical.nifti import read_volume
from segnet_domains.percentiles import channel_percentiles, percentiles, scale_range
from segnet_domains.synthetic.brain import PHANTOM_AFFINE as MNI_AFFINE
from segnet_domains.synthetic.brain import phantom_brain as atlas_volume
from segnet_domains.training.transforms import Normalized

Q = [0.0, 0.5, 1.0, 2.0, 50.0, 98.0, 99.0, 99.5, 100.0]
DTYPES = [np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64]


def _values(rng: np.random.Generator, dtype: type, n: int) -> np.ndarray:
    if dtype is np.bool_:
        return rng.random(n) > 0.7
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -40000), min(info.max, 40000), n, endpoint=True).astype(dtype)
    return rng.normal(300, 1000, n).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 1001, 65537])
def test_percentiles_equal_numpy(dtype: type, n: int) -> None:
    """Exactly numpy's ``linear`` percentiles, for numpy arrays and CPU tensors, every dtype.

    The reference is ``np.percentile`` of the values as float64: numpy interpolates small
    integer types in their own dtype, where ``b - a`` overflows (int8 -115 … 37 gives -115.52
    for the 0.5th percentile of two values); ours interpolates in float64 always.
    """
    a = _values(np.random.default_rng(n), dtype, n)
    ref = np.percentile(a.astype(np.float64), Q)
    np.testing.assert_allclose(percentiles(a, Q), ref, rtol=1e-12, atol=0)
    np.testing.assert_allclose(percentiles(torch.from_numpy(a), Q), ref, rtol=1e-12, atol=0)
    if dtype in (np.float32, np.float64, np.uint16):  # and numpy on the array itself, as MONAI calls it
        np.testing.assert_allclose(percentiles(a, Q), np.percentile(a, Q), rtol=1e-6, atol=0)


def test_histogram_path_on_wide_integer_ranges() -> None:
    """Histogram order statistics at the extremes of int16/uint16 (negative half rolled in place)."""
    a = np.array([-32768, -1, 0, 1, 32767, -32768, 5], np.int16)
    np.testing.assert_array_equal(percentiles(a, [0, 100, 50]), [-32768, 32767, 0])
    u = np.array([0, 65535, 65535, 1], np.uint16)
    np.testing.assert_allclose(percentiles(u, [0, 100, 50]), [0, 65535, 32768.0])
    img = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for view in (img[:, :, 1], img[::-1, ::-2, 0]):  # strided and flipped bytes (counted by torch)
        ref = np.percentile(view.astype(np.float64), Q)
        np.testing.assert_allclose(percentiles(view, Q), ref, rtol=1e-12)
    with pytest.raises(ValueError, match="empty"):
        percentiles(np.zeros(0, np.uint8), [1])
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentiles(a, [101])


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: rng.normal(300, 1000, 1_100_000),
        lambda rng: -rng.exponential(2, 1_100_000),  # all negative: bits flipped
        lambda rng: np.round(rng.normal(0, 2, 1_200_000)),  # ties across -0.0 and +0.0
        lambda rng: np.r_[np.full(1_100_000, 7.0), rng.random(5), [np.inf, -np.inf]],  # one bucket; ±inf
    ],
)
def test_float32_radix_path_equals_numpy(make: Callable[[np.random.Generator], np.ndarray]) -> None:
    """Float32 channels above a million values take the radix-histogram path: still numpy's numbers."""
    a = make(np.random.default_rng(3)).astype(np.float32)
    q = [0.0, 0.5, 1.0, 50.0, 99.0, 99.5, 100.0]
    with np.errstate(invalid="ignore"):  # inf - inf in the interpolation, for numpy too
        ref = np.percentile(a.astype(np.float64), q)
        np.testing.assert_array_equal(percentiles(a, q), ref)
        np.testing.assert_array_equal(percentiles(a[::-1].copy(), q), ref)  # order does not matter


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_a_volume_seen_slice_axis_first_is_read_where_it_lies(dtype: type) -> None:
    """A ``moveaxis`` view (how volumes are sliced) is walked in memory order, not copied: numpy's numbers.

    Both the float32 radix path (over a million values) and the integer histogram path, for the
    array and for a CPU tensor of it; ``_flat`` gives a view of the volume's own memory.
    """
    from segnet_domains.percentiles import _flat

    vol = _values(np.random.default_rng(5), dtype, 120 * 100 * 95).reshape(120, 100, 95)
    moved = np.moveaxis(vol, 2, 0)
    assert not moved.flags.c_contiguous and np.shares_memory(_flat(moved), vol)
    assert np.shares_memory(_flat(torch.from_numpy(vol).movedim(2, 0)), vol)
    ref = np.percentile(vol.astype(np.float64), Q)
    np.testing.assert_array_equal(percentiles(moved, Q), ref)
    np.testing.assert_array_equal(percentiles(torch.from_numpy(vol).movedim(2, 0), Q), ref)
    np.testing.assert_array_equal(channel_percentiles(moved[None], Q)[0], ref)
    monai = channel_percentiles(moved[None], [0.5, 99.5], like_monai=True)[0]
    ref32 = np.percentile(vol.astype(np.float32), [0.5, 99.5]).astype(np.float32)
    np.testing.assert_array_equal(monai, ref32)


@pytest.mark.parametrize("threads", [1, 3])
def test_float32_radix_path_in_parts_equals_numpy(threads: int) -> None:
    """Over 2 million values the radix keys and buckets are found in parts, one per torch thread."""
    rng = np.random.default_rng(4)
    dense = rng.uniform(1.0, 1.0078, 2_000_000)  # one radix bucket (same high 16 bits), distinct values
    a = np.concatenate([dense, rng.normal(0, 2, 1_200_000), np.full(200_000, 9.5)]).astype(np.float32)
    rng.shuffle(a[:3_000_000])  # the dense bucket in every part, the top bucket only in the last one
    q = [0.0, 0.5, 1.0, 30.0, 50.0, 60.0, 99.0, 99.5, 100.0]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = percentiles(a, q)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(got, np.percentile(a.astype(np.float64), q))


def test_channel_percentiles_and_valid_mask() -> None:
    rng = np.random.default_rng(3)
    chw = rng.integers(0, 4000, (3, 40, 50)).astype(np.uint16)
    valid = rng.random((40, 50)) > 0.3
    got = channel_percentiles(chw, [1, 99], valid)
    for c in range(3):
        np.testing.assert_allclose(got[c], np.percentile(chw[c][valid].astype(np.float64), [1, 99]))
    none = channel_percentiles(chw, [1, 99], np.zeros((40, 50), bool))
    np.testing.assert_array_equal(none, 0.0)


def _reference(chw: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """The percentile normalisation written out with ``np.percentile`` (MONAI's numbers)."""
    out = np.empty(chw.shape, np.float32)
    for c, x in enumerate(chw.astype(np.float64)):
        lo, hi = np.percentile(x, [lower, upper])
        out[c] = x - lo if hi == lo else np.clip((x - lo) / (hi - lo), 0, 1)
    return out


def test_scale_range_numpy_tensor_and_constant_channel() -> None:
    x = np.stack([np.arange(12, dtype=np.float32).reshape(3, 4), np.full((3, 4), 7, np.float32)])
    lo, hi = [2.0, 7.0], [8.0, 7.0]
    out = scale_range(x, lo, hi)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], np.clip((x[0] - 2) / 6, 0, 1), rtol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)  # upper == lower: shifted only, as MONAI does
    t = scale_range(torch.from_numpy(x)[None], lo, hi)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (1, 2, 3, 4)
    np.testing.assert_allclose(t[0].numpy(), out, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", ">u2", "uint32", "float64"])
def test_scale_range_any_dtype_and_layout_equals_the_float32_formula(dtype: str) -> None:
    """numpy or tensor; any dtype, byte order, strides (flipped), read-only: ``(x - lo) / span``, float32."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 250, (2, 5, 7)).astype(dtype)
    lo, hi = [10.0, 20.0], [200.0, 120.0]
    lo32 = np.float32([10, 20]).reshape(-1, 1, 1)
    want = np.clip((x.astype(np.float32) - lo32) / (np.float32([190, 100]).reshape(-1, 1, 1)), 0, 1)
    flipped = x[:, ::-1]
    frozen = x.copy()
    frozen.flags.writeable = False
    for arr, expected in ((x, want), (flipped, want[:, ::-1]), (frozen, want)):
        out = scale_range(arr, lo, hi)
        assert out.dtype == np.float32 and out.flags.writeable
        np.testing.assert_array_equal(out, expected)
    before = x.copy()
    if x.dtype.isnative and dtype != "uint32":
        t = scale_range(torch.from_numpy(x), lo, hi)
        assert t.dtype == torch.float32
        np.testing.assert_array_equal(t.numpy(), want)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 3, 5, 7)])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_scale_range_channels_last_is_the_same_numbers_channel_innermost(
    shape: tuple[int, ...], as_tensor: bool
) -> None:
    """``channels_last`` writes ``…×H×W×C`` memory (torch's channels-last for 4D), values unchanged.

    A constant channel (upper == lower) is shifted only, also through the per-element clamp bounds.
    """
    rng = np.random.default_rng(5)
    x = rng.integers(0, 250, shape).astype(np.uint8)
    x[..., 1, :, :] = 9
    lo, hi = [10.0, 9.0, 30.0][: shape[-3]], [200.0, 9.0, 90.0][: shape[-3]]
    src = torch.from_numpy(x) if as_tensor else x
    want = np.asarray(scale_range(src, lo, hi))
    got = scale_range(src, lo, hi, channels_last=True)
    assert isinstance(got, torch.Tensor) == as_tensor
    got_np = got.numpy() if isinstance(got, torch.Tensor) else got
    np.testing.assert_array_equal(got_np, want)
    assert (want[..., 1, :, :] == 0).all() and want.max() == 1.0  # shifted only / clipped
    assert np.moveaxis(got_np, -3, -1).flags.c_contiguous  # channel-innermost memory
    if as_tensor and len(shape) == 4:
        assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int8, bool])
def test_channel_percentiles_histogram_path_equals_each_channel(dtype: type) -> None:
    """The per-channel histograms with one interpolation: numpy's numbers, and MONAI's with ``like_monai``.

    Checked on an interleaved ``H×W×C`` image seen channel-first (strided channels) and a tensor.
    """
    rng = np.random.default_rng(11)
    hwc = (rng.normal(0, 1, (37, 41, 3)) * (1 if dtype is bool else 60)).astype(dtype)
    chw = np.moveaxis(hwc, -1, 0)
    q = [0.5, 37.5, 99.5]
    want = np.array([np.percentile(c.astype(np.float64), q) for c in chw])
    np.testing.assert_array_equal(channel_percentiles(chw, q), want)
    monai = np.array([percentiles(np.ascontiguousarray(c), q, like_monai=True) for c in chw])
    np.testing.assert_array_equal(channel_percentiles(chw, q, like_monai=True), monai)
    np.testing.assert_array_equal(channel_percentiles(torch.from_numpy(chw), q, like_monai=True), monai)
    with pytest.raises(ValueError, match="percentiles must lie"):
        channel_percentiles(chw, [101])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 1 mm MNI-grid int16 T1w NIfTI (reduced), an 8-bit RGB PNG, a uint16 4-band TIFF."""
    tmp = tmp_path_factory.mktemp("norm")
    rng = np.random.default_rng(0)
    vol, _ = atlas_volume(rng, (49, 58, 47), lesions=1)
    img = nib.Nifti1Image(np.round(vol).astype(np.int16), MNI_AFFINE)
    img.set_qform(MNI_AFFINE, code=4)
    img.set_sform(MNI_AFFINE, code=4)
    nib.save(img, tmp / "t1w.nii.gz")
    rgb = np.clip(rng.normal(120, 50, (61, 83, 3)), 0, 255).astype(np.uint8)
    iio.imwrite(tmp / "fundus.png", rgb)
    bands = rng.gamma(2.0, 700.0, (57, 66, 4)).astype(np.uint16)
    iio.imwrite(tmp / "scene.tif", bands)
    return {"nifti": tmp / "t1w.nii.gz", "png": tmp / "fundus.png", "tif": tmp / "scene.tif"}


SPEC = {"mode": "percentile", "lower": 0.5, "upper": 99.5}


def test_volume_inference_equals_training_transform(files: dict[str, Path]) -> None:
    """predict-volume's adapter and the ATLAS training pipeline's MONAI transforms give the same numbers."""
    raw = np.asanyarray(nib.load(files["nifti"]).dataobj)
    assert raw.dtype == np.int16
    volume = read_volume(files["nifti"]).data  # float32, as predict-volume reads it
    adapter = VolumeSliceAdapter(2, 0, SPEC)
    inference = adapter.prepare(volume)  # S×H×W, slice axis first
    from_int16 = adapter.prepare(raw)  # the histogram path on the stored int16 voxels
    loaded = LoadImaged("image", reader="NibabelReader", ensure_channel_first=True, image_only=True)(
        {"image": str(files["nifti"])}
    )
    training = Normalized("image", SPEC)(loaded)["image"]  # 1×X×Y×Z MetaTensor
    assert isinstance(training, torch.Tensor) and training.dtype == torch.float32
    reference = _reference(raw[None], 0.5, 99.5)[0]
    for got in (inference, from_int16, np.moveaxis(training[0].numpy(), 2, 0)):
        np.testing.assert_allclose(got, np.moveaxis(reference, 2, 0), rtol=1e-6, atol=1e-6)


def test_image_inference_equals_training_transform(files: dict[str, Path]) -> None:
    """An 8-bit PNG: ImageAdapter (uint8, histogram) = Normalized on MONAI's float32 load = np.percentile."""
    rgb = read_image(files["png"])
    assert rgb.dtype == np.uint8
    inference = ImageAdapter(3, SPEC)(rgb)
    loaded = LoadImaged("image", reader="PILReader", ensure_channel_first=True, image_only=True)(
        {"image": str(files["png"])}
    )
    training = Normalized("image", SPEC)(loaded)["image"].numpy()  # C×W×H (PIL reverses the axes)
    reference = _reference(np.moveaxis(rgb, -1, 0), 0.5, 99.5)
    np.testing.assert_allclose(inference, reference, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.swapaxes(training, 1, 2), reference, rtol=1e-6, atol=1e-6)


def test_scene_and_tensor_paths_equal_the_adapter(files: dict[str, Path]) -> None:
    """uint16 bands: adapter, scene-wide statistics and the tensor (device) path agree with np.percentile."""
    bands = read_image(files["tif"])
    assert bands.dtype == np.uint16
    spec = {"mode": "percentile", "lower": 1.0, "upper": 99.0}
    chw = np.moveaxis(bands, -1, 0)
    reference = _reference(chw, 1.0, 99.0)
    inference = ImageAdapter(4, spec)(bands)
    scene = SceneNormalizer(spec, chw, np.ones(chw.shape[1:], bool))
    tensor = Normalizer(spec)(torch.from_numpy(chw.astype(np.int32)))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    for got in (
        inference,
        scene(chw),
        scene(torch.from_numpy(chw.astype(np.int32))[None])[0].numpy(),
        tensor,
    ):
        np.testing.assert_allclose(np.asarray(got), reference, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        scene.stats["lower"], np.percentile(chw.reshape(4, -1).astype(float), 1, axis=1)
    )


@pytest.mark.parametrize("shape", [(1, 64, 64), (2, 37, 53), (3, 2, 2), (1, 1100, 1000)])
def test_normalizer_is_bit_identical_to_monai(shape: tuple[int, ...]) -> None:
    """The bounds and scaling MONAI's ``ScaleIntensityRangePercentiles`` gave, bit for bit.

    Up to 10⁶ values per channel MONAI interpolates in float32 (``torch.quantile``), above in
    float64 (numpy); models trained with it keep their exact inputs (the last shape is numpy's regime).
    """
    from monai.transforms import ScaleIntensityRangePercentiles

    x = np.random.default_rng(sum(shape)).normal(100, 30, shape).astype(np.float32)
    monai = ScaleIntensityRangePercentiles(
        lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True, channel_wise=True
    )
    np.testing.assert_array_equal(Normalizer(SPEC)(x), np.asarray(monai(x), np.float32))


@pytest.mark.parametrize("channels_last", [False, True])
def test_percentile_scaling_applies_the_whole_arrays_bounds_to_its_parts(channels_last: bool) -> None:
    """Bounds of the whole array, applied to pieces of it (numpy or tensor): the whole's MONAI numbers."""
    from monai.transforms import ScaleIntensityRangePercentiles

    x = np.random.default_rng(5).gamma(2.0, 900.0, (2, 6, 40, 50)).clip(0, 65535).astype(np.uint16)
    monai = ScaleIntensityRangePercentiles(
        lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True, channel_wise=True
    )
    want = np.asarray(monai(x.reshape(2, -1, 50).astype(np.float32)), np.float32).reshape(x.shape)
    scale = Normalizer(SPEC).percentile_scaling(x, channels_last)
    pieces = x.transpose(1, 0, 2, 3)  # B×C×H×W: six pieces of both channels
    np.testing.assert_array_equal(scale(pieces[:4]), want.transpose(1, 0, 2, 3)[:4])
    got = scale(torch.from_numpy(pieces[4:].astype(np.int32)))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert (got.stride(1) == 1) == channels_last
    np.testing.assert_array_equal(got.numpy(), want.transpose(1, 0, 2, 3)[4:])


@pytest.mark.parametrize("shape", [(360, 480, 3), (3, 600, 1700)])
def test_integer_image_normalisation_is_bit_identical_to_monai(shape: tuple[int, ...]) -> None:
    """8- and 16-bit pixels (the histogram path), interleaved or band-sequential: MONAI's numbers bit for bit.

    MONAI scales the float32 image; the second shape has over 10⁶ values per
    channel (numpy's regime in MONAI). The channels-last tensor path equals it too.
    """
    from monai.transforms import ScaleIntensityRangePercentiles

    rng = np.random.default_rng(sum(shape))
    dtype = np.uint8 if shape[-1] == 3 else np.uint16
    img = (
        rng.gamma(2.0, 40.0 if dtype == np.uint8 else 900.0, shape).clip(0, np.iinfo(dtype).max).astype(dtype)
    )
    chw = np.moveaxis(img, -1, 0) if shape[-1] == 3 else img
    monai = ScaleIntensityRangePercentiles(
        lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True, channel_wise=True
    )
    want = np.asarray(monai(chw.astype(np.float32)), np.float32)
    np.testing.assert_array_equal(Normalizer(SPEC)(chw), want)
    tensor = ImageAdapter(3, SPEC).tensor(img, channels_last=True)
    assert tensor.stride()[0] == 1  # channel-innermost
    np.testing.assert_array_equal(tensor.numpy(), want)
