"""Remote rasters and STAC items, served by a real HTTP server on 127.0.0.1 (range requests, bytes counted).

The tiler must give exactly the output of the same local file, read the
remote file window by window (bytes fetched ≈ the file once, the scene-stat
sample only from an overview), keep resume working, and fail in one line for
a 404, an unreachable host or a STAC item without the named asset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.shutil import copy as rio_copy
from rasterio.windows import Window

from segnet_domains.cli import main
from segnet_domains.errors import InputError
from segnet_domains.geo import tiler
from segnet_domains.geo.scene import open_scene, read_sample, read_window
from segnet_domains.geo.sources import gdal_path, is_stac_item, raster_stem, resolve_source
from segnet_domains.synthetic.layouts import write_geotiff
from tests.data.geo import BAND_NAMES, make_scene
from tests.data.http import ServedFiles, serve_files


@pytest.fixture(autouse=True)
def _offline_gdal(monkeypatch: pytest.MonkeyPatch, gdal_setenv: Callable[[str, str], None]) -> None:
    """GDAL and urllib reach 127.0.0.1 directly and never list folders or try sidecar files."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    gdal_setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
    gdal_setenv("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", ".tif,.json")
    gdal_setenv("GDAL_HTTP_MAX_RETRY", "0")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServedFiles]:
    root = tmp_path / "www"
    root.mkdir()
    with serve_files(root) as srv:
        yield srv


def cog(src: Path, dst: Path, blocksize: int = 256) -> Path:
    """``src`` as a Cloud-Optimized GeoTIFF (tiled, DEFLATE, nearest overviews)."""
    rio_copy(src, dst, driver="COG", compress="DEFLATE", blocksize=blocksize, overview_resampling="nearest")
    return dst


def _tile(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["tile", *argv, "--device", "cpu", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def _read(path: Path) -> tuple[np.ndarray, object, object]:
    with rasterio.open(path) as src:
        return src.read(), src.crs, src.transform


def _same_outputs(a: Path, b: Path, stem_a: str, stem_b: str) -> None:
    """Labels and probabilities identical, CRS and transform identical."""
    for kind in ("labels", "proba"):
        da, crs_a, tr_a = _read(a / f"{stem_a}_{kind}.tif")
        db, crs_b, tr_b = _read(b / f"{stem_b}_{kind}.tif")
        assert crs_a == crs_b and tr_a == tr_b and da.shape == db.shape
        np.testing.assert_array_equal(da, db)
    labels = _read(a / f"{stem_a}_labels.tif")[0]
    assert len(np.unique(labels[labels != 255])) >= 2  # a real map, not one class everywhere


# ------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("text", "gdal", "stem"),
    [
        ("https://h.example/S2_T33.tif?sig=a", "/vsicurl/https://h.example/S2_T33.tif?sig=a", "S2_T33"),
        ("s3://bucket/scenes/LC08.TIF", "/vsis3/bucket/scenes/LC08.TIF", "LC08"),
        ("gs://bucket/a/b.tiff", "/vsigs/bucket/a/b.tiff", "b"),
        ("/vsizip/archive.zip/inner.tif", "/vsizip/archive.zip/inner.tif", "inner"),
        ("scenes/local.tif", "scenes/local.tif", "local"),
    ],
)  # fmt: skip
def test_urls_map_to_gdal_virtual_file_systems(text: str, gdal: str, stem: str) -> None:
    assert gdal_path(text) == gdal
    assert raster_stem(text) == stem


def test_stac_items_are_recognised() -> None:
    assert is_stac_item("item.json") and is_stac_item("https://h/x/item.JSON")
    assert is_stac_item("https://stac.example/v1/collections/sentinel-2-l2a/items/S2B_33UVP_20240601")
    assert not is_stac_item("https://h/items/x.tif") and not is_stac_item("scene.tif")


# ------------------------------------------------------------------------------------ remote COG


def test_remote_cog_opens_from_its_header_and_samples_an_overview(
    tmp_path: Path, server: ServedFiles
) -> None:
    """2048 × 1024 × 3 uint16: opening reads the header only; the statistics sample reads one overview."""
    rng = np.random.default_rng(0)
    field = np.kron(rng.integers(500, 4000, (3, 64, 32)), np.ones((1, 32, 32), np.int64))
    data = (field + rng.normal(0, 120, field.shape)).clip(1, 10000).astype(np.uint16)
    raw = write_geotiff(tmp_path / "raw.tif", data, BAND_NAMES)
    local = cog(raw, server.root / "big.tif")
    size = local.stat().st_size
    scene = open_scene(f"{server.url}/big.tif")
    assert (scene.height, scene.width, scene.count, scene.stem) == (2048, 1024, 3, "big")
    assert server.total() < 64 * 1024 < size / 100
    ref = open_scene(local)
    assert (scene.crs, scene.transform, scene.descriptions) == (ref.crs, ref.transform, ref.descriptions)

    server.reset()
    with scene.open() as src:
        data, valid = read_sample(src, [1, 2, 3])
    fetched = server.total()
    print(f"sample read via URL: {fetched} bytes of a {size}-byte COG ({fetched / size:.2f}×)")
    with rasterio.open(local) as src:
        local_data, local_valid = read_sample(src, [1, 2, 3])
    np.testing.assert_array_equal(data, local_data)
    np.testing.assert_array_equal(valid, local_valid)
    assert data.shape == (3, 1024, 512)
    # the 1024×512 overview is a quarter of the pixels: its bytes, not the file's
    assert 0.1 * size < fetched < 0.3 * size, (fetched, size)


#: Runs ``tile`` in a fresh process with GDAL's block cache at 3 MB: /vsicurl/ sizes its own cache
#: (CPL_VSIL_CURL_CACHE_SIZE) once per process, so only a fresh process gets the smaller one.
_SMALL_CACHE_TILE = (
    "import sys; import segnet_domains.geo.tiler as t; t.GDAL_CACHE_BYTES = 3 * 2**20; "
    "t.READER_CACHE_MAX_BYTES = 3 * 2**20; "
    "from segnet_domains.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_tile_url_equals_local_file_reading_each_byte_about_once(
    tmp_path: Path, server: ServedFiles, aerial_checkpoint: Path, capsys
) -> None:
    """A scene bigger than the sample budget, tiled from its URL, with caches smaller than the file.

    GDAL's block cache (the tiler's 16 MB, here 3 MB) and /vsicurl/'s own
    cache (16 MB by default, here 1 MB) would hide refetching on a small
    file; shrunk below the scene's size, the bytes served show the read
    pattern itself (with a 64 KB block cache the same run fetches 1.5×).
    """
    raw, _ = make_scene(tmp_path / "raw.tif", 1024, 1280, seed=2)
    local = cog(raw, server.root / "T33UVP.tif")
    size = local.stat().st_size
    assert size > 4 * 2**20
    url = f"{server.url}/T33UVP.tif"
    common = ["-m", str(aerial_checkpoint), "--tile", "256", "--overlap", "64", "--proba"]
    code, _, err = _tile([str(local), "-o", str(tmp_path / "local"), *common], capsys)
    assert code == 0, err
    server.reset()
    env = {**os.environ, "CPL_VSIL_CURL_CACHE_SIZE": str(2**20)}
    argv = ["tile", url, "-o", str(tmp_path / "remote"), *common, "--device", "cpu", "--no-progress"]
    run = subprocess.run(
        [sys.executable, "-c", _SMALL_CACHE_TILE, *argv], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0 and "1 done" in run.stdout, run.stderr
    fetched = server.total()
    # windows overlap by 64 rows and columns (each pixel is in ~1.6 windows) and the sample reads
    # an overview: a reader that refetched per window would pass 1.6×; this one reads each block once
    with capsys.disabled():
        print(f"\ntile via URL: {fetched} bytes fetched of a {size}-byte COG ({fetched / size:.2f}×)")
    assert fetched < 1.15 * size, (fetched, size)
    _same_outputs(tmp_path / "local", tmp_path / "remote", "T33UVP", "T33UVP")
    with rasterio.open(tmp_path / "remote" / "T33UVP_labels.tif") as dst:
        assert dst.tags()["SEGNET_SOURCE"] == "T33UVP.tif"

    server.reset()  # resume keys on the output files: a rerun skips, reading headers only
    code, out, _ = _tile([url, "-o", str(tmp_path / "remote"), *common], capsys)
    assert code == 0 and "1 skipped" in out
    assert server.total() < 64 * 1024


def test_remote_scene_is_read_ahead_by_a_thread(
    tmp_path: Path, server: ServedFiles, aerial_segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the model's threads take every core a local scene is read between passes; a URL is not."""
    depths: list[int] = []
    prefetch = tiler.prefetch

    def spy(items, depth):
        depths.append(depth)
        return prefetch(items, depth)

    monkeypatch.setattr(tiler, "prefetch", spy)
    monkeypatch.setattr(tiler, "usable_cores", torch.get_num_threads)
    raw, _ = make_scene(tmp_path / "raw.tif", 300, 260, seed=3)
    local = cog(raw, server.root / "R.tif")
    opts = tiler.TileOptions(tile_size=128, overlap=32, proba=True)
    tiler.tile_scene(aerial_segmenter, f"{server.url}/R.tif", tmp_path / "remote", opts)
    tiler.tile_scene(aerial_segmenter, local, tmp_path / "local", opts)
    assert depths == [1, 0]
    _same_outputs(tmp_path / "local", tmp_path / "remote", "R", "R")


def test_windows_are_decoded_by_every_core_only_where_no_other_work_runs(
    tmp_path: Path, server: ServedFiles, aerial_segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDAL's decoding threads: every usable core when a local scene is read between the model's passes.

    One beside a reader thread (the model's passes run then), and one for a
    URL (its reads must go through the block cache). Same outputs either way.
    """
    threads: list[str] = []
    env = tiler.rasterio.Env

    def spy(**options):
        if "GDAL_NUM_THREADS" in options:
            threads.append(options["GDAL_NUM_THREADS"])
        return env(**options)

    monkeypatch.setattr(tiler.rasterio, "Env", spy)
    monkeypatch.setattr(tiler, "usable_cores", lambda: 3)
    raw, _ = make_scene(tmp_path / "raw.tif", 300, 260, seed=4)
    local = cog(raw, server.root / "D.tif")
    runs = {"between": (local, 0), "thread": (local, 1), "remote": (f"{server.url}/D.tif", 0)}
    for name, (scene, prefetch) in runs.items():
        opts = tiler.TileOptions(tile_size=128, overlap=32, proba=True, prefetch=prefetch)
        tiler.tile_scene(aerial_segmenter, scene, tmp_path / name, opts)
    assert threads == ["3", "1", "1"]
    _same_outputs(tmp_path / "between", tmp_path / "thread", "D", "D")
    _same_outputs(tmp_path / "between", tmp_path / "remote", "D", "D")


def test_s3_url_reads_through_vsis3(tmp_path: Path, server: ServedFiles, monkeypatch) -> None:
    """``s3://bucket/key`` goes through GDAL's /vsis3/ (here against the local server as the S3 endpoint)."""
    (server.root / "bucket").mkdir()
    raw, _ = make_scene(tmp_path / "raw.tif", 300, 260)
    local = cog(raw, server.root / "bucket" / "scene.tif")
    for k, v in {
        "AWS_S3_ENDPOINT": f"127.0.0.1:{server.port}",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_NO_SIGN_REQUEST": "YES",
    }.items():
        monkeypatch.setenv(k, v)
    scene = open_scene("s3://bucket/scene.tif")
    assert scene.stem == "scene" and scene.identity == ["/vsis3/bucket/scene.tif"]
    window = Window(17, 33, 120, 90)
    with scene.open() as src, rasterio.open(local) as ref:
        data, valid = read_window(src, [3, 1], window)
        np.testing.assert_array_equal(data, ref.read([3, 1], window=window))
    assert "/bucket/scene.tif" in server.requests


def test_remote_errors_are_one_line(
    tmp_path: Path, server: ServedFiles, aerial_checkpoint: Path, capsys
) -> None:
    missing = f"{server.url}/gone.tif"
    with pytest.raises(InputError, match=r"gone.tif: cannot read the URL: HTTP 404 Not Found$"):
        open_scene(missing)
    with pytest.raises(InputError, match=r"cannot read the URL: cannot connect \(Connection refused\)$"):
        open_scene("http://127.0.0.1:9/scene.tif")  # the discard port: nothing listens
    good, _ = make_scene(tmp_path / "good.tif", 140, 140)
    code, out, err = _tile(
        [missing, str(good), "-m", str(aerial_checkpoint), "-o", str(tmp_path / "o"), "--tile", "128"], capsys
    )
    assert code == 1 and "1 done, 1 failed" in out
    assert err.strip() == f"error: {missing}: cannot read the URL: HTTP 404 Not Found"


# ------------------------------------------------------------------------------------ STAC


def _band_cogs(tmp: Path, root: Path, height: int, width: int, seed: int = 0) -> tuple[Path, dict[str, Path]]:
    """A 4-band scene, as one local GeoTIFF and as four single-band COGs B02, B03, B04, B08 under ``root``."""
    scene, _ = make_scene(tmp / "stack.tif", height, width, bands=4, seed=seed)
    with rasterio.open(scene) as src:
        data = src.read()
    files = {}
    for i, key in enumerate(["B02", "B03", "B04", "B08"]):
        one = write_geotiff(tmp / f"{key}_raw.tif", data[i], nodata=0)
        files[key] = cog(one, root / f"{key}.tif")
    return scene, files


def _item(path: Path, assets: dict[str, dict], item_id: str = "S2B_33UVP_20240601_0_L2A") -> Path:
    """Write a STAC 1.0 item with ``assets`` (hrefs relative to the item, as catalogues publish them)."""
    with rasterio.open(path.parent / next(iter(assets.values()))["href"]) as src:
        bounds, epsg = src.bounds, src.crs.to_epsg()
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "id": item_id,
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[13.0, 46.0], [14.4, 46.0], [14.4, 47.0], [13.0, 47.0], [13.0, 46.0]]],
        },
        "bbox": [13.0, 46.0, 14.4, 47.0],
        "properties": {"datetime": "2024-06-01T10:05:59Z", "proj:epsg": epsg, "proj:bbox": list(bounds)},
        "links": [],
        "assets": assets,
    }
    path.write_text(json.dumps(item, indent=1))
    return path


def _band_asset(key: str, common: str) -> dict:
    return {
        "href": f"./{key}.tif",
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "roles": ["data"],
        "eo:bands": [{"name": key, "common_name": common}],
    }


BANDS = dict(zip(["B02", "B03", "B04", "B08"], BAND_NAMES))


def test_stac_item_url_with_per_band_assets_equals_the_local_stack(
    tmp_path: Path, server: ServedFiles, aerial_checkpoint: Path, capsys
) -> None:
    stack, _ = _band_cogs(tmp_path, server.root, 260, 200, seed=4)
    _item(server.root / "item.json", {k: _band_asset(k, c) for k, c in BANDS.items()})
    item_url = f"{server.url}/item.json"
    common = ["-m", str(aerial_checkpoint), "--tile", "128", "--overlap", "32", "--proba"]
    local3 = write_geotiff(tmp_path / "rgb.tif", rasterio.open(stack).read([1, 2, 3]), BAND_NAMES, nodata=0)
    assert _tile([str(local3), "-o", str(tmp_path / "local"), *common], capsys)[0] == 0

    # by common name; the checkpoint's band names (blue, green, red) pick the VRT's bands
    code, out, err = _tile(
        [item_url, "--assets", "red,green,blue,nir", "-o", str(tmp_path / "a"), *common], capsys
    )
    assert code == 0, err
    _same_outputs(tmp_path / "local", tmp_path / "a", "rgb", "S2B_33UVP_20240601_0_L2A")
    sent = {k: server.bytes_sent[f"/{k}.tif"] for k in BANDS}
    assert sent["B08"] < 20_000 < min(sent["B02"], sent["B03"], sent["B04"]), sent  # nir: its header only

    # by asset key, in the model's order; from a local copy of the item whose hrefs point at the server
    item = json.loads((server.root / "item.json").read_text())
    for key, asset in item["assets"].items():
        asset["href"] = f"{server.url}/{key}.tif"
    (tmp_path / "item.json").write_text(json.dumps(item))
    code, _, err = _tile(
        [str(tmp_path / "item.json"), "--assets", "B02,B03,B04", "-o", str(tmp_path / "b"), *common], capsys
    )
    assert code == 0, err
    _same_outputs(tmp_path / "local", tmp_path / "b", "rgb", "S2B_33UVP_20240601_0_L2A")


def test_stac_multiband_asset_and_band_names(tmp_path: Path, server: ServedFiles) -> None:
    stack, files = _band_cogs(tmp_path, server.root, 200, 180)
    cog(stack, server.root / "visual.tif")
    _item(
        server.root / "item.json",
        {
            "visual": {
                "href": "visual.tif",
                "eo:bands": [{"name": n, "common_name": n} for n in BAND_NAMES],
            },
            "B08": _band_asset("B08", "nir"),
        },
    )
    scene = open_scene(f"{server.url}/item.json", ["visual", "B08"])
    assert scene.count == 5 and scene.descriptions == (*BAND_NAMES, "B08")
    assert scene.stem == "S2B_33UVP_20240601_0_L2A" and scene.name == scene.stem
    with scene.open() as src, rasterio.open(stack) as ref:
        window = Window(10, 20, 150, 160)
        data, _ = read_window(src, [1, 2, 3, 4, 5], window)
        expect = ref.read(window=window)
        np.testing.assert_array_equal(data[:4], expect)
        np.testing.assert_array_equal(data[4], expect[3])


def test_stac_coarser_asset_is_resampled_onto_the_finest_grid(tmp_path: Path, server: ServedFiles) -> None:
    """Sentinel-2's layout: a 20 m band beside 10 m ones covering the same footprint."""
    _, files = _band_cogs(tmp_path, server.root, 256, 256)
    with rasterio.open(files["B08"]) as src:
        prof, nir = src.profile, src.read(1)
    coarse = nir.reshape(128, 2, 128, 2).mean(axis=(1, 3)).astype(np.uint16)
    prof.update(width=128, height=128, transform=src.transform @ src.transform.scale(2, 2), driver="GTiff")
    with rasterio.open(server.root / "B8A.tif", "w", **prof) as dst:
        dst.write(coarse, 1)
    _item(server.root / "item.json", {"B04": _band_asset("B04", "red"), "B8A": _band_asset("B8A", "nir08")})
    scene = open_scene(f"{server.url}/item.json", ["red", "nir08"])
    with rasterio.open(files["B04"]) as ref:
        assert (scene.height, scene.width, scene.transform) == (256, 256, ref.transform.to_gdal())
    with scene.open() as src:
        data = src.read(2, window=Window(64, 64, 128, 128)).astype(float)
    # bilinear upsampling of the 2×2 means: close to the original 10 m values' local mean
    smooth = coarse[32:96, 32:96].astype(float).repeat(2, 0).repeat(2, 1)
    assert data.shape == (128, 128) and np.abs(data - smooth).mean() < 0.1 * smooth.mean()


def test_stac_errors_are_one_line(tmp_path: Path, server: ServedFiles) -> None:
    _, files = _band_cogs(tmp_path, server.root, 160, 140)
    item = _item(server.root / "item.json", {k: _band_asset(k, c) for k, c in BANDS.items()})
    url = f"{server.url}/item.json"
    with pytest.raises(InputError, match=r"has no asset 'swir16' \(it has: B02, B03, B04, B08\)$"):
        open_scene(url, ["red", "swir16"])
    with pytest.raises(InputError, match=r"choose its assets with --assets \(it has: B02, B03, B04, B08\)$"):
        open_scene(url)
    with pytest.raises(InputError, match=r"nope.json: cannot fetch the STAC item \(HTTP 404 Not Found\)$"):
        open_scene(f"{server.url}/nope.json", ["red"])
    with pytest.raises(InputError, match=r"cannot fetch the STAC item \(.*refused"):
        open_scene("http://127.0.0.1:9/item.json", ["red"])
    with pytest.raises(InputError, match=r"--assets is for STAC items"):
        resolve_source(f"{server.url}/B02.tif", ["red"])
    # an asset whose file is gone, one on another footprint
    data = json.loads(item.read_text())
    data["assets"]["B03"]["href"] = "./missing.tif"
    item.write_text(json.dumps(data))
    with pytest.raises(
        InputError, match=r"asset 'B03' \(.*missing.tif\) cannot be read: HTTP 404 Not Found$"
    ):
        open_scene(url, ["blue", "green"])
    shifted = write_geotiff(tmp_path / "shift.tif", np.ones((160, 140), np.uint16), nodata=0)
    with rasterio.open(shifted, "r+") as dst:
        dst.transform = dst.transform @ dst.transform.translation(5, 0)
    cog(shifted, server.root / "shifted.tif")
    data["assets"]["B03"]["href"] = "./shifted.tif"  # a new name: GDAL remembers the 404 of the old one
    item.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"asset 'B03' covers .* assets must share one footprint$"):
        open_scene(url, ["blue", "green"])
    bad = server.root / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"bad.json: not JSON"):
        open_scene(f"{server.url}/bad.json", ["red"])
