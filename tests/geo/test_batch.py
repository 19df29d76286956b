"""Many scenes: inputs from globs and list files, broken scenes reported, JSON summary, Dask fan-out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from segnet_domains import InputError
from segnet_domains.geo.batch import SegmenterSpec, expand_scenes, prepare_out_dir, run_batch
from segnet_domains.geo.tiler import TileOptions
from tests.data.geo import make_scene

OPTS = TileOptions(tile_size=64, overlap=16)


def test_expand_scenes(tmp_path: Path) -> None:
    for name in ("b.tif", "a.tif", "c.tiff"):
        (tmp_path / name).write_bytes(b"")
    sub = tmp_path / "lists"
    sub.mkdir()
    (sub / "scenes.txt").write_text("# my scenes\n../a.tif\n\n" + str(tmp_path / "c.tiff") + "  # abs\n")
    got = expand_scenes([str(tmp_path / "*.tif"), str(sub / "scenes.txt"), str(tmp_path / "a.tif")])
    assert got == [tmp_path / "a.tif", tmp_path / "b.tif", tmp_path / "c.tiff"]  # sorted glob, no dupes
    assert expand_scenes([str(tmp_path / "none*.tif")]) == [tmp_path / "none*.tif"]  # reported later


def test_prepare_out_dir(tmp_path: Path) -> None:
    assert prepare_out_dir(tmp_path / "new" / "deep").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        prepare_out_dir(blocker)
    with pytest.raises(InputError, match="cannot create the output folder"):
        prepare_out_dir(blocker / "out")


def test_batch_reports_broken_scene_and_finishes_others(tmp_path: Path, aerial_checkpoint: Path) -> None:
    good = [make_scene(tmp_path / f"g{i}.tif", 80, 100, seed=i)[0] for i in range(2)]
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00garbage")
    listing = tmp_path / "scenes.txt"
    listing.write_text("g1.tif\nbroken.tif\n")
    out = tmp_path / "out"
    spec = SegmenterSpec(str(aerial_checkpoint), device="cpu", batch_size=4)
    summary = run_batch(spec, [str(good[0]), str(listing)], out, OPTS, progress=False)
    assert [s.status for s in summary.scenes] == ["done", "done", "failed"]
    assert summary.failed[0].error.startswith(str(broken)) and "corrupt GeoTIFF" in summary.failed[0].error
    data = json.loads(summary.path.read_text())
    assert data["counts"] == {"done": 2, "failed": 1} and data["scenes"][0]["seconds"] > 0
    assert {Path(s["scene"]).name for s in data["scenes"]} == {"g0.tif", "g1.tif", "broken.tif"}
    assert sorted(p.name for p in out.glob("*.tif")) == ["g0_labels.tif", "g1_labels.tif"]
    assert not list(out.glob(".*"))  # nothing partial from the broken scene
    rerun = run_batch(spec, [str(tmp_path / "g*.tif")], out, OPTS, progress=False)
    assert [s.status for s in rerun.scenes] == ["skipped", "skipped"]
    assert rerun.path != summary.path  # one summary per run


def test_same_output_name_is_reported(tmp_path: Path, aerial_checkpoint: Path) -> None:
    (tmp_path / "x").mkdir(), (tmp_path / "y").mkdir()
    a, _ = make_scene(tmp_path / "x" / "s.tif", 70, 70)
    b, _ = make_scene(tmp_path / "y" / "s.tif", 70, 70)
    spec = SegmenterSpec(str(aerial_checkpoint), device="cpu")
    summary = run_batch(spec, [a, b], tmp_path / "out", OPTS, progress=False)
    assert [s.status for s in summary.scenes] == ["done", "failed"]
    assert "same output name" in summary.scenes[1].error


def test_dask_local_cluster_matches_single_process(tmp_path: Path, aerial_checkpoint: Path) -> None:
    """A LocalCluster of 2 worker processes on several scenes writes the same rasters as one process."""
    pytest.importorskip("dask.distributed")
    scenes = [make_scene(tmp_path / f"d{i}.tif", 90 + 10 * i, 110, seed=i)[0] for i in range(3)]
    spec = SegmenterSpec(str(aerial_checkpoint), device="cpu", precision="fp32", batch_size=4)
    opts = TileOptions(tile_size=64, overlap=16, proba=True)
    single = run_batch(spec, scenes, tmp_path / "single", opts, progress=False)
    dist = run_batch(spec, scenes, tmp_path / "dask", opts, workers=2, progress=False)
    assert [s.status for s in single.scenes] == ["done"] * 3
    assert [s.status for s in dist.scenes] == ["done"] * 3
    for s in scenes:
        for kind in ("labels", "proba"):
            name = f"{s.stem}_{kind}.tif"
            with rasterio.open(tmp_path / "single" / name) as a, rasterio.open(tmp_path / "dask" / name) as b:
                np.testing.assert_array_equal(a.read(), b.read())
                assert a.profile == b.profile
