"""Streaming one scene: geometry, COG layout, nodata, dtypes, equivalence, bounded memory, resume."""

from __future__ import annotations

import gc
import itertools
import os
import signal
import subprocess
import sys
import tracemalloc
import weakref
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from segnet_domains import Segmenter
from segnet_domains.errors import InputError
from segnet_domains.geo import tiler
from segnet_domains.geo.outputs import LABEL_NODATA
from segnet_domains.geo.tiler import TileOptions, TileProgress, iter_tile_scene, tile_scene
from segnet_domains.synthetic.layouts import geotiff_profile, write_geotiff
from segnet_domains.tiling import TileGrid
from tests.data.geo import CLASS_NAMES, make_scene
from tests.test_inference import blob_mosaic

OPTS = TileOptions(tile_size=128, overlap=32)


def read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(), {
            "profile": src.profile,
            "tags": src.tags(),
            "layout": src.tags(ns="IMAGE_STRUCTURE"),
            "overviews": src.overviews(1),
            "colormap": src.colormap(1) if src.count == 1 and src.dtypes[0] == "uint8" else None,
            "descriptions": src.descriptions,
            "scales": src.scales,
        }


def test_outputs_are_aligned_cogs(tmp_path: Path, aerial_segmenter: Segmenter) -> None:
    scene, truth = make_scene(tmp_path / "T33UVP.tif", 600, 700)
    opts = TileOptions(tile_size=256, overlap=64, proba=True, uncertainty=True, samples=2)
    result = tile_scene(aerial_segmenter, scene, tmp_path, opts)
    assert result.status == "done" and result.tiles == 12
    labels, meta = read(tmp_path / "T33UVP_labels.tif")
    with rasterio.open(scene) as src:
        assert meta["profile"]["crs"] == src.crs and meta["profile"]["transform"] == src.transform
        assert (meta["profile"]["width"], meta["profile"]["height"]) == (src.width, src.height)
    assert labels.dtype == np.uint8 and labels.shape == (1, 600, 700)
    assert meta["layout"]["LAYOUT"] == "COG" and meta["profile"]["tiled"] and meta["overviews"] == [2]
    assert meta["profile"]["compress"] == "deflate"
    assert meta["tags"]["CLASS_NAMES"] == '["soil", "water", "vegetation", "built"]'
    assert meta["colormap"][1][:3] == (230, 25, 75) and meta["colormap"][LABEL_NODATA][3] == 0
    # nodata stays nodata, valid pixels get a class
    np.testing.assert_array_equal(labels[0] == LABEL_NODATA, truth == 255)
    assert set(np.unique(labels[0][truth != 255])) <= set(range(len(CLASS_NAMES)))

    proba, pmeta = read(tmp_path / "T33UVP_proba.tif")
    assert proba.shape == (4, 600, 700) and pmeta["descriptions"] == tuple(CLASS_NAMES)
    valid = truth != 255
    sums = proba[:, valid].astype(int).sum(0) * pmeta["scales"][0]
    assert np.abs(sums - 1).max() < 0.02
    unc, _ = read(tmp_path / "T33UVP_uncertainty.tif")
    assert unc.dtype == np.float32 and np.isnan(unc[0][~valid]).all() and (unc[0][valid] >= 0).all()
    assert unc[0][valid].max() > 0  # dropout sampling varies
    assert not list(tmp_path.glob(".*"))  # no work folder or temporary file left


def test_labels_match_probabilities(tmp_path: Path, aerial_segmenter: Segmenter) -> None:
    scene, truth = make_scene(tmp_path / "s.tif", 200, 260)
    tile_scene(aerial_segmenter, scene, tmp_path, TileOptions(tile_size=128, overlap=32, proba=True))
    labels, _ = read(tmp_path / "s_labels.tif")
    proba, _ = read(tmp_path / "s_proba.tif")
    valid = truth != 255
    top = np.sort(proba[:, valid], axis=0)
    clear = top[-1] > top[-2] + 1  # not a tie after quantisation
    np.testing.assert_array_equal(proba[:, valid].argmax(0)[clear], labels[0][valid][clear])


@pytest.mark.parametrize("pixels", [1, 1000])
def test_blocks_encoded_a_few_rows_at_a_time_give_the_same_outputs(
    tmp_path: Path, aerial_segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch, pixels: int
) -> None:
    """Row by row (1 pixel: one row per step) or several rows with a shorter last step: bit for bit."""
    scene, _ = make_scene(tmp_path / "s.tif", 230, 300)
    opts = TileOptions(tile_size=128, overlap=32, proba=True, uncertainty=True, samples=2)
    outputs = {}
    for name, limit in (("whole", tiler.ENCODE_PIXELS), ("rows", pixels)):
        monkeypatch.setattr(tiler, "ENCODE_PIXELS", limit)
        (tmp_path / name).mkdir()
        tile_scene(aerial_segmenter, scene, tmp_path / name, opts)
        kinds = ("labels", "proba", "uncertainty")
        outputs[name] = [read(tmp_path / name / f"s_{kind}.tif")[0] for kind in kinds]
    for whole, rows in zip(outputs["whole"], outputs["rows"]):
        np.testing.assert_array_equal(whole, rows)


def test_nodata_fill_never_changes_valid_predictions(tmp_path: Path, aerial_segmenter: Segmenter) -> None:
    a, truth = make_scene(tmp_path / "a.tif", 200, 260, nodata=0)
    b, _ = make_scene(tmp_path / "b.tif", 200, 260, nodata=65535)
    c, _ = make_scene(tmp_path / "c.tif", 200, 260, nodata=None, fill=7)  # undeclared: --nodata 7
    tile_scene(aerial_segmenter, a, tmp_path, OPTS)
    tile_scene(aerial_segmenter, b, tmp_path, OPTS)
    tile_scene(aerial_segmenter, c, tmp_path, TileOptions(tile_size=128, overlap=32, nodata=7))
    la, lb, lc = (read(tmp_path / f"{n}_labels.tif")[0][0] for n in "abc")
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(la, lc)
    np.testing.assert_array_equal(la == LABEL_NODATA, truth == 255)


def test_scene_without_crs_warns_and_works(tmp_path: Path, aerial_segmenter: Segmenter) -> None:
    scene, _ = make_scene(tmp_path / "plain.tif", 130, 140, crs=None)
    with pytest.warns(UserWarning, match="no CRS"):
        tile_scene(aerial_segmenter, scene, tmp_path, OPTS)
    with rasterio.open(tmp_path / "plain_labels.tif") as src:
        assert src.crs is None and src.shape == (130, 140)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_any_dtype_and_band_selection(tmp_path: Path, aerial_segmenter: Segmenter, dtype: str) -> None:
    rng = np.random.default_rng(1)
    img = (rng.random((5, 140, 150)) * 200).astype(dtype)
    scene = write_geotiff(tmp_path / f"{dtype}.tif", img, nodata=None)
    opts = TileOptions(tile_size=128, overlap=32, bands=[5, 1, 3])
    tile_scene(aerial_segmenter, scene, tmp_path, opts)
    labels, _ = read(tmp_path / f"{dtype}_labels.tif")
    assert labels.shape == (1, 140, 150) and labels.max() < 4


def test_raster_tiling_equals_whole_image_for_trained_model(tmp_path: Path, trained_checkpoint: Path) -> None:
    """Default tile and overlap on a GeoTIFF vs ``predict_proba`` on the whole array in memory."""
    seg = Segmenter.from_checkpoint(trained_checkpoint, device="cpu")
    img, mask = blob_mosaic(1100, 1300, seed=3)
    scene = write_geotiff(tmp_path / "blobs.tif", img, nodata=None)
    tile_scene(seg, scene, tmp_path, TileOptions())
    tiled = read(tmp_path / "blobs_labels.tif")[0][0]
    whole = seg.predict(img)
    assert (whole == mask).mean() > 0.8
    differ = whole != tiled
    assert 1 - differ.mean() >= 0.995
    seam = TileGrid.create(1100, 1300, 512, 128, align=seg.multiple).seam_distance() < 16
    assert differ[seam].mean() <= max(3 * differ[~seam].mean(), 0.002)


def _peak_numpy_bytes(seg: Segmenter, path: Path, out: Path) -> int:
    tracemalloc.start()
    try:
        tile_scene(seg, path, out, TileOptions(tile_size=128, overlap=32, batch_size=4))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_scene_height(
    tmp_path: Path, aerial_segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Peak numpy memory is one band of tile rows, whatever the height (statistics sample capped)."""
    monkeypatch.setattr("segnet_domains.geo.scene.SAMPLE_PIXELS", 40_000)
    short, _ = make_scene(tmp_path / "short.tif", 640, 384, border=False)  # enough rows to fill the queues
    tall, _ = make_scene(tmp_path / "tall.tif", 2560, 384, border=False)  # 4× the pixels
    small = _peak_numpy_bytes(aerial_segmenter, short, tmp_path)
    big = _peak_numpy_bytes(aerial_segmenter, tall, tmp_path)
    assert big <= 1.25 * small, (small, big)


def test_a_batch_is_released_before_the_next_forward_pass(
    tmp_path: Path, aerial_segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once blended, a batch's probabilities are freed before the next batch runs (one batch in memory)."""
    scene, _ = make_scene(tmp_path / "s.tif", 300, 420)
    infer = tiler._Job.infer
    earlier: list[weakref.ref] = []
    alive_at_calls: list[int] = []

    def spy(self: tiler._Job, *args: object) -> list:
        gc.collect()
        alive_at_calls.append(sum(ref() is not None for ref in earlier))
        groups = infer(self, *args)
        earlier.extend(weakref.ref(g) for g in groups)
        return groups

    monkeypatch.setattr(tiler._Job, "infer", spy)
    tile_scene(
        aerial_segmenter, scene, tmp_path / "out", TileOptions(tile_size=128, overlap=32, batch_size=2)
    )
    assert len(alive_at_calls) > 3 and alive_at_calls == [0] * len(alive_at_calls)


@pytest.mark.parametrize(
    ("size", "layout", "expected_mb"),
    [
        # 512² blocks of 3 uint16 bands: a tile row of 512 crosses up to 2 block rows; 3 are kept
        (2048, {"blocksize": 512}, 18.0),
        # 4096 wide would need 36 MB: capped
        (4096, {"blocksize": 512}, 32.0),
        # strips of 16 rows: (512 / 16 + 2) strips of the whole width
        (8192, {"blocksize": 16384, "blockysize": 16}, 34 * 16 * 8192 * 6 / 2**20),
        # tiny blocks: at least GDAL_CACHE_BYTES
        (512, {"blocksize": 256}, 16.0),
    ],
)
def test_reader_cache_holds_the_blocks_two_tile_rows_share(
    tmp_path: Path, size: int, layout: dict, expected_mb: float
) -> None:
    """The reader's GDAL cache is sized from the file's blocks and the grid, within its bounds."""
    profile = geotiff_profile(size, size, 3, "uint16", blocksize=layout["blocksize"])
    if "blockysize" in layout:  # striped
        profile["blockysize"] = layout["blockysize"]
    with rasterio.open(tmp_path / "s.tif", "w", **profile):  # its layout only: no pixels written
        pass
    scene = tiler.open_scene(tmp_path / "s.tif")
    assert scene.profile["blockysize"] == layout.get("blockysize", layout["blocksize"])
    grid = TileGrid.create(size, size, 512, 128, align=32)
    assert tiler.reader_cache_bytes(scene, grid) == round(expected_mb * 2**20)


def test_reader_reads_with_its_cache_and_one_batch_ahead_on_the_cpu(
    tmp_path: Path, aerial_segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each window is read under the sized block cache; a CPU model reads between its passes when its
    threads take every core, else one batch ahead; the outputs are the same either way."""
    scene, _ = make_scene(tmp_path / "s.tif", 300, 420)
    caches: list[str] = []
    depths: list[int] = []
    read_window, prefetch = tiler.read_window, tiler.prefetch

    def spy_read(*args: object, **kwargs: object):
        caches.append(rasterio.env.getenv()["GDAL_CACHEMAX"])
        return read_window(*args, **kwargs)

    def spy_prefetch(items, depth):
        depths.append(depth)
        return prefetch(items, depth)

    monkeypatch.setattr(tiler, "read_window", spy_read)
    monkeypatch.setattr(tiler, "prefetch", spy_prefetch)
    monkeypatch.setattr(tiler, "GDAL_CACHE_BYTES", 2**20)  # below what this scene's layout needs
    monkeypatch.setattr(tiler, "usable_cores", torch.get_num_threads)  # the model's threads take them all
    tile_scene(aerial_segmenter, scene, tmp_path / "out", OPTS)
    grid = TileGrid.create(300, 420, 128, 32, align=aerial_segmenter.multiple)
    want = tiler.reader_cache_bytes(tiler.open_scene(scene), grid)
    assert want > 2**20 and caches and set(caches) == {want}
    assert depths == [0]
    monkeypatch.setattr(tiler, "usable_cores", lambda: torch.get_num_threads() + 1)  # a core to spare
    tile_scene(aerial_segmenter, scene, tmp_path / "out1", OPTS)
    tile_scene(aerial_segmenter, scene, tmp_path / "out2", TileOptions(tile_size=128, overlap=32, prefetch=3))
    tile_scene(aerial_segmenter, scene, tmp_path / "out3", TileOptions(tile_size=128, overlap=32, prefetch=0))
    assert depths == [0, 1, 3, 0]  # a user's value is kept, 0 included
    for out in ("out1", "out2", "out3"):
        with (
            rasterio.open(tmp_path / "out" / "s_labels.tif") as a,
            rasterio.open(tmp_path / out / "s_labels.tif") as b,
        ):
            np.testing.assert_array_equal(a.read(), b.read())


def _interrupt_after(rows: int):
    def callback(done: int, total: int) -> None:
        if done >= rows:
            raise KeyboardInterrupt

    return callback


@pytest.mark.numerics
def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path, aerial_segmenter: Segmenter) -> None:
    """Ctrl-C after 3 bands of rows; the rerun continues and equals an uninterrupted run (MC draws too)."""
    scene, _ = make_scene(tmp_path / "s.tif", 300, 200)
    opts = TileOptions(tile_size=64, overlap=24, proba=True, uncertainty=True, samples=2)
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref_dir.mkdir(), run_dir.mkdir()
    tile_scene(aerial_segmenter, scene, ref_dir, opts)
    with pytest.raises(KeyboardInterrupt):
        tile_scene(aerial_segmenter, scene, run_dir, opts, on_rows=_interrupt_after(3))
    work = run_dir / ".s.tiling"
    assert (work / "progress.json").is_file() and not (run_dir / "s_labels.tif").exists()
    result = tile_scene(aerial_segmenter, scene, run_dir, opts)
    assert result.status == "resumed" and not work.exists()
    for name in ["labels", "proba", "uncertainty"]:
        a, b = read(ref_dir / f"s_{name}.tif")[0], read(run_dir / f"s_{name}.tif")[0]
        np.testing.assert_array_equal(a, b)
    again = tile_scene(aerial_segmenter, scene, run_dir, opts)
    assert again.status == "skipped"
    with pytest.raises(
        InputError, match=r"other settings \(overlap 24 → 16"
    ):  # issue 11: never replaced silently
        tile_scene(aerial_segmenter, scene, run_dir, TileOptions(tile_size=64, overlap=16))
    changed = tile_scene(aerial_segmenter, scene, run_dir, TileOptions(tile_size=64, overlap=16, force=True))
    assert changed.status == "done"  # other options with force: redone, not skipped


def test_generator_stopped_midway_keeps_its_rows_and_resumes(
    tmp_path: Path, aerial_segmenter: Segmenter
) -> None:
    """Stop iterating (napari's Cancel) and close: no output yet, finished rows kept, a rerun resumes."""
    scene, _ = make_scene(tmp_path / "g.tif", 260, 200)
    opts = TileOptions(tile_size=64, overlap=24, batch_size=2)
    run_dir, ref_dir = tmp_path / "run", tmp_path / "ref"
    run_dir.mkdir(), ref_dir.mkdir()
    steps = iter_tile_scene(aerial_segmenter, scene, run_dir, opts)
    seen: list[TileProgress] = []
    for step in steps:
        seen.append(step)
        if step.rows_done >= 2:
            break
    steps.close()
    grid = TileGrid.create(260, 200, 64, 24, align=aerial_segmenter.multiple)
    assert seen[0] == (0, len(grid), 0, grid.shape[0])
    assert all(a.done < b.done or b.rows_done > a.rows_done for a, b in itertools.pairwise(seen[1:]))
    assert not (run_dir / "g_labels.tif").exists() and (run_dir / ".g.tiling" / "progress.json").is_file()
    assert tile_scene(aerial_segmenter, scene, run_dir, opts).status == "resumed"
    tile_scene(aerial_segmenter, scene, ref_dir, opts)
    np.testing.assert_array_equal(read(run_dir / "g_labels.tif")[0], read(ref_dir / "g_labels.tif")[0])


KILL_SCRIPT = """
import os, signal, sys
from segnet_domains import Segmenter
from segnet_domains.geo.tiler import TileOptions, tile_scene

def kill(done, total):
    if done >= 2:
        os.kill(os.getpid(), signal.SIGKILL)

seg = Segmenter.from_checkpoint(sys.argv[1], device="cpu", batch_size=4)
tile_scene(seg, sys.argv[2], sys.argv[3], TileOptions(tile_size=64, overlap=24), on_rows=kill)
"""


@pytest.mark.numerics
def test_killed_process_resumes(tmp_path: Path, aerial_checkpoint: Path, aerial_segmenter: Segmenter) -> None:
    """A SIGKILL (no cleanup at all) mid-scene: the rerun continues and matches a clean run."""
    scene, _ = make_scene(tmp_path / "k.tif", 260, 200)
    run_dir, ref_dir = tmp_path / "run", tmp_path / "ref"
    run_dir.mkdir(), ref_dir.mkdir()
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(aerial_checkpoint), str(scene), str(run_dir)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert (run_dir / ".k.tiling" / "progress.json").is_file()
    opts = TileOptions(tile_size=64, overlap=24)
    assert tile_scene(aerial_segmenter, scene, run_dir, opts).status == "resumed"
    tile_scene(aerial_segmenter, scene, ref_dir, opts)
    np.testing.assert_array_equal(read(run_dir / "k_labels.tif")[0], read(ref_dir / "k_labels.tif")[0])
