"""Scene metadata, band selection, windowed reads with nodata, scene-wide normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio._env import get_gdal_config
from rasterio.shutil import copy as rio_copy
from rasterio.windows import Window

from segnet_domains import InputError, read_info
from segnet_domains.adapters import Normalizer
from segnet_domains.geo.normalize import SceneNormalizer
from segnet_domains.geo.scene import (
    check_tile_fits,
    open_scene,
    read_sample,
    read_window,
    sample_windows,
    select_bands,
)
from segnet_domains.synthetic.fields import footprint
from segnet_domains.synthetic.layouts import geotiff_profile, write_geotiff
from tests.data.geo import make_scene, truncate


def test_open_scene_metadata(tmp_path: Path) -> None:
    path, _ = make_scene(tmp_path / "s2_T33.tif", 64, 80, bands=4)
    scene = open_scene(path)
    assert (scene.height, scene.width, scene.count, scene.dtype) == (64, 80, 4, "uint16")
    assert "UTM zone 33N" in scene.crs and scene.transform == (399960.0, 30.0, 0.0, 5100000.0, 0.0, -30.0)
    assert scene.nodata == 0 and scene.descriptions == ("blue", "green", "red", "nir")
    assert scene.stem == "s2_T33"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("not a raster"), "not a raster"),
        (lambda p: write_geotiff(p, np.ones((1, 1), np.uint16)), "1×1"),
        (lambda p: write_geotiff(p, np.ones((1, 9), np.uint16)), "need at least 2×2"),
        (lambda p: write_geotiff(p, np.ones((4, 4), np.complex64), nodata=None), "not supported"),
    ],
)
def test_open_scene_rejects(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad.tif"
    make(path)
    with pytest.raises(InputError, match=message) as err:
        open_scene(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_truncated_raster_fails_on_open_or_read(tmp_path: Path) -> None:
    path, _ = make_scene(tmp_path / "full.tif", 600, 600, border=False)
    cut = truncate(path, tmp_path / "cut.tif", keep=0.4)
    with pytest.raises(InputError, match="cut.tif"):
        open_scene(cut)
        with rasterio.open(cut) as src:
            for r in range(0, 600, 100):
                read_window(src, [1, 2, 3], Window(0, r, 600, 100))


def test_select_bands(tmp_path: Path, aerial_checkpoint: Path) -> None:
    info = read_info(aerial_checkpoint)  # band_names blue, green, red
    four, _ = make_scene(tmp_path / "four.tif", 32, 32, bands=4)
    assert select_bands(open_scene(four), info) == [1, 2, 3]  # by name
    assert select_bands(open_scene(four), info, [4, 3, 2]) == [4, 3, 2]
    anon = write_geotiff(tmp_path / "anon.tif", np.ones((4, 32, 32), np.uint16))
    with pytest.raises(InputError, match="scene has 4 band.*expects 3.*--bands"):
        select_bands(open_scene(anon), info)
    with pytest.raises(InputError, match=r"band\(s\) \[7\] do not exist"):
        select_bands(open_scene(anon), info, [1, 2, 7])
    with pytest.raises(InputError, match="2 band.*expects 3"):
        select_bands(open_scene(anon), info, [1, 2])


def test_check_tile_fits(tmp_path: Path) -> None:
    path, _ = make_scene(tmp_path / "small.tif", 100, 300)
    check_tile_fits(open_scene(path), 100)
    with pytest.raises(InputError, match=r"smaller than one 128×128 tile; use --tile 64"):
        check_tile_fits(open_scene(path), 128)


def test_read_window_masks(tmp_path: Path) -> None:
    path, truth = make_scene(tmp_path / "s.tif", 90, 120)
    with rasterio.open(path) as src:
        data, valid = read_window(src, [1, 2, 3], Window(10, 5, 100, 80))
    assert data.shape == (3, 80, 100) and data.dtype == np.uint16
    np.testing.assert_array_equal(valid, footprint(90, 120)[5:85, 10:110])
    # an undeclared nodata value given by the user
    undeclared, _ = make_scene(tmp_path / "u.tif", 90, 120, nodata=None, fill=0)
    with rasterio.open(undeclared) as src:
        _, all_valid = read_window(src, [1, 2, 3], Window(0, 0, 120, 90))
        _, given = read_window(src, [1, 2, 3], Window(0, 0, 120, 90), nodata=0)
    assert all_valid.all()
    np.testing.assert_array_equal(given, truth != 255)
    # NaN in float scenes is nodata
    arr = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    arr[:, 2, 3] = np.nan
    fpath = write_geotiff(tmp_path / "f.tif", arr, nodata=None)
    with rasterio.open(fpath) as src:
        _, fvalid = read_window(src, [1, 2], Window(0, 0, 8, 8))
    assert not fvalid[2, 3] and fvalid.sum() == 63


def _gdal_validity(path: Path, bands: list[int], window: Window) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read_masks(bands, window=window).any(axis=0)


@pytest.mark.parametrize("kind", ["nodata", "partial", "nan", "internal_mask", "alpha", "none"])
def test_read_window_validity_matches_gdal_masks(tmp_path: Path, kind: str) -> None:
    """Validity computed from the pixels equals GDAL's dataset mask, whatever declares nodata."""
    rng = np.random.default_rng(3)
    win = Window(7, 3, 50, 40)
    path = tmp_path / f"{kind}.tif"
    if kind in ("nodata", "partial"):
        arr = rng.integers(1, 500, (3, 48, 64)).astype(np.uint16)
        arr[:, :10] = 0  # nodata in every band
        arr[1, 20:30] = 0  # in one band only: still valid (GDAL's rule: nodata when every band is)
        if kind == "partial":
            arr[0, 40:] = 0
            arr[2, 40:] = 0
        write_geotiff(path, arr, nodata=0)
    elif kind == "nan":
        arr = rng.random((2, 48, 64)).astype(np.float32)
        arr[:, 5:9] = np.nan
        arr[0, 30] = np.nan
        write_geotiff(path, arr, nodata=float("nan"))
    elif kind == "internal_mask":
        arr = rng.integers(1, 500, (3, 48, 64)).astype(np.uint16)
        write_geotiff(path, arr, nodata=None)
        with rasterio.open(path, "r+") as dst:
            mask = np.full((48, 64), 255, np.uint8)
            mask[:, :12] = 0
            dst.write_mask(mask)
    elif kind == "alpha":
        arr = rng.integers(1, 255, (4, 48, 64)).astype(np.uint8)
        arr[3] = 255
        arr[3, 30:] = 0
        prof = {**geotiff_profile(48, 64, 4, "uint8", nodata=None), "photometric": "rgb", "alpha": "yes"}
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(arr)
    else:
        arr = rng.integers(0, 500, (3, 48, 64)).astype(np.int16)
        write_geotiff(path, arr, nodata=None)
    bands = [1, 2] if kind == "nan" else [1, 2, 3]
    with rasterio.open(path) as src:
        data, valid = read_window(src, bands, win)
        if kind == "alpha":
            assert src.mask_flag_enums[0] == [
                rasterio.enums.MaskFlags.per_dataset,
                rasterio.enums.MaskFlags.alpha,
            ]
    expected = _gdal_validity(path, bands, win)
    if kind == "nan":  # NaN in any band is nodata too (GDAL's mask only looks at each band's own value)
        expected &= np.isfinite(data).all(axis=0)
    assert 0 < expected.sum() < expected.size or kind == "none"
    np.testing.assert_array_equal(valid, expected)


def test_scene_normalizer_matches_whole_image_normalizer(tmp_path: Path) -> None:
    path, _ = make_scene(tmp_path / "s.tif", 120, 150, border=False)
    spec = {"mode": "percentile", "lower": 2.0, "upper": 98.0}
    with rasterio.open(path) as src:
        sample, valid = read_sample(src, [1, 2, 3])
        whole = src.read()
    assert sample.shape == whole.shape  # small scenes: statistics from every pixel
    fixed = SceneNormalizer(spec, sample, valid)
    np.testing.assert_allclose(fixed(whole), Normalizer(spec)(whole), atol=1e-5)
    # a window normalised on its own would differ; the scene normaliser does not
    np.testing.assert_allclose(fixed(whole[:, :40, :40]), Normalizer(spec)(whole)[:, :40, :40], atol=1e-5)
    z = SceneNormalizer({"mode": "zscore"}, sample, valid)
    np.testing.assert_allclose(z(whole), Normalizer({"mode": "zscore"})(whole), atol=1e-4)


def test_scene_normalizer_ignores_nodata(tmp_path: Path) -> None:
    a, _ = make_scene(tmp_path / "a.tif", 100, 100, nodata=0)
    b, _ = make_scene(tmp_path / "b.tif", 100, 100, nodata=65535)
    stats = []
    for p in (a, b):
        with rasterio.open(p) as src:
            stats.append(SceneNormalizer({"mode": "percentile"}, *read_sample(src, [1, 2, 3])).stats)
    assert stats[0] == stats[1]


@pytest.mark.parametrize("overviews", [False, True])
def test_read_sample_is_bounded(tmp_path: Path, overviews: bool) -> None:
    path, _ = make_scene(tmp_path / "s.tif", 400, 300, border=False)
    if overviews:
        with rasterio.open(path, "r+") as dst:
            dst.build_overviews([2, 4])
    with rasterio.open(path) as src:
        sample, valid = read_sample(src, [1, 3], max_pixels=10_000)
        whole = src.read([1, 3])
    assert sample.shape[0] == 2 and sample.shape[1] * sample.shape[2] <= 12_000 and valid.all()
    # a fair sample: its median is close to the scene's
    np.testing.assert_allclose(np.median(sample, axis=(1, 2)), np.median(whole, axis=(1, 2)), rtol=0.25)


def test_a_tiled_scenes_sample_lies_in_a_few_of_its_blocks(tmp_path: Path) -> None:
    """GDAL decodes whole blocks: 16 windows, each inside one of 16 blocks spread corner to corner.

    The 8×8 grid put a window in each of the 64 blocks of this scene (all of
    it decoded for a sample of 1/16); the sample's percentiles stay the
    scene's (here within 1 % of their span; over eight scenes the old grid's
    were within 0.4–2.8 %, these within 0.6–1.8 %).
    """
    path, _ = make_scene(tmp_path / "s.tif", 1024, 1024, border=False)
    with rasterio.open(path) as src:
        whole = src.read()
    tiled = write_geotiff(tmp_path / "tiled.tif", whole, blocksize=128)
    with rasterio.open(tiled) as src:
        assert src.block_shapes[0] == (128, 128)
        windows = sample_windows(src.height, src.width, src.block_shapes[0], 1 << 16)
        sample, valid = read_sample(src, [1, 2, 3], max_pixels=1 << 16)
        expected = np.concatenate([src.read(window=w) for w in windows], axis=2)
    np.testing.assert_array_equal(sample, expected)  # read_sample reads these windows, side by side
    assert sample.shape == (3, 64, 16 * 64) and valid.all()
    rows = {w.row_off // 128 for w in windows} | {(w.row_off + w.height - 1) // 128 for w in windows}
    cols = {w.col_off // 128 for w in windows} | {(w.col_off + w.width - 1) // 128 for w in windows}
    assert len(windows) == 16 and rows == cols == {0, 2, 5, 7}  # 16 blocks of 64, none crossed
    spec = {"mode": "percentile", "lower": 1.0, "upper": 99.0}
    got = SceneNormalizer(spec, sample, valid).stats
    exact = SceneNormalizer(spec, whole, np.ones(whole.shape[1:], bool)).stats
    span = np.subtract(exact["upper"], exact["lower"])
    for key in ("lower", "upper"):
        assert np.all(np.abs(np.subtract(got[key], exact[key])) < 0.02 * span), (key, got, exact)


def test_a_sample_keeps_the_8x8_grid_where_blocks_are_strips_or_small() -> None:
    """Strips (blocks as wide as the scene), blocks smaller than its windows, a scene a block high."""
    for block in [(1, 4096), (16, 16), (256, 256)]:
        windows = sample_windows(4096, 4096, block, 1 << 20)
        assert len(windows) == 64 and {w.width for w in windows} == {128}, block
    assert len(sample_windows(600, 5000, (512, 512), 1 << 20)) == 64
    windows = sample_windows(4096, 4096, (512, 512), 1 << 20)  # 64 blocks: a quarter of them decoded
    assert len(windows) == 16 and sum(w.width * w.height for w in windows) == 1 << 20


def test_read_sample_in_threads_equals_one_handle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A window-grid sample read by several threads, each with its own handle: the same pixels, in order."""
    from segnet_domains.geo import scene as scene_module

    monkeypatch.setattr(scene_module, "usable_cores", lambda: 3)
    path, _ = make_scene(tmp_path / "s.tif", 400, 300, nodata=0)
    scene, opened = open_scene(path), []

    def opener():  # Scene.open, counted, with the GDAL option its thread sees
        opened.append(get_gdal_config("SEGNET_TEST_OPTION"))
        return scene.open()

    with rasterio.Env(GDAL_CACHEMAX=8 * 2**20, SEGNET_TEST_OPTION="caller"), scene.open() as src:
        one = read_sample(src, [1, 3], max_pixels=10_000)
        threaded = read_sample(src, [1, 3], max_pixels=10_000, opener=opener)
    assert opened == ["caller"] * 3  # a handle per thread, in the caller's GDAL options
    np.testing.assert_array_equal(threaded[0], one[0])
    np.testing.assert_array_equal(threaded[1], one[1])
    assert not one[1].all() and one[1].any()  # the footprint's nodata border is in the sample

    # a COG keeps its header in front: the truncated file opens, a thread's read fails, in one line
    cog = tmp_path / "cog.tif"
    rio_copy(path, cog, driver="COG", overviews="none", blocksize=64)
    cut = truncate(cog, tmp_path / "cut.tif", keep=0.5)
    with rasterio.open(cut) as src, pytest.raises(InputError, match="cut.tif") as err:
        read_sample(src, [1, 2, 3], max_pixels=10_000, opener=lambda: rasterio.open(cut))
    assert "\n" not in str(err.value)
