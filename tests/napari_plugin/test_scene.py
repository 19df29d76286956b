"""Scene mode: a lazily opened GeoTIFF is tiled out of core from its file, never loaded whole."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio

import napari_plugin._reader as reader
from napari_plugin import segment_layer
from napari_plugin._compute import Cancelled, build_request, iter_segmentation, run_to_end
from segnet_domains import Segmenter
from segnet_domains.geo.tiler import TileOptions, tile_scene
from tests.napari_plugin.data import ensure_plugin_discovered, open_in_viewer


@pytest.fixture
def lazy_scene(scene, monkeypatch: pytest.MonkeyPatch):
    """The 96² RGB scene, opened as if it were huge (multiscale, lazily read)."""
    monkeypatch.setattr(reader, "LAZY_PIXELS", 1000)
    monkeypatch.setattr(reader, "CHUNK", 32)
    return open_in_viewer(reader.read_geotiff(str(scene[0]))[0])


@pytest.fixture
def aerial_ckpt(untrained_checkpoint) -> Path:
    return untrained_checkpoint(
        3, 4, name="aerial-drop.pt", domain="aerial", tile_size=64, tile_overlap=16, dropout=0.2,
        normalization={"mode": "scale", "scale": 255}, class_names=["background", "building", "road", "tree"],
    )  # fmt: skip


def test_lazy_scene_is_tiled_from_its_file(lazy_scene, scene, aerial_ckpt: Path, tmp_path: Path) -> None:
    viewer, image = lazy_scene
    assert image.multiscale and build_request(viewer, image).mode == "scene"
    out_dir = tmp_path / "mine"
    labels = segment_layer(viewer, image, aerial_ckpt, "cpu", uncertainty=True, mc_samples=2, out_dir=out_dir)
    assert labels.metadata["segnet_domains"]["files"][0] == str(out_dir / "scene_labels.tif")
    assert labels.multiscale and labels.data[0].shape == (96, 96)
    # the same result as the tile CLI's streaming tiler on the file
    seg = Segmenter.from_checkpoint(aerial_ckpt, device="cpu")
    ref = tile_scene(seg, scene[0], tmp_path, TileOptions(uncertainty=True, samples=2))
    with rasterio.open(ref.outputs[0]) as src:
        np.testing.assert_array_equal(np.asarray(labels.data[0]), src.read(1))
    unc = viewer.layers["scene uncertainty"]
    assert unc.multiscale and np.nanmax(np.asarray(unc.data[0])) > 0
    assert tuple(labels.scale) == (0.5, 0.5)
    # saving copies the tiler's COG: CRS and transform of the source
    out = tmp_path / "saved.tif"
    ensure_plugin_discovered()
    labels.save(str(out), plugin="segnet-domains")
    with rasterio.open(out) as dst, rasterio.open(scene[0]) as src:
        assert (dst.crs, dst.transform) == (src.crs, src.transform)
        np.testing.assert_array_equal(dst.read(1), np.asarray(labels.data[0]))


def test_cancelled_scene_stops_and_resumes(lazy_scene, aerial_ckpt: Path, tmp_path: Path) -> None:
    viewer, image = lazy_scene
    req = build_request(viewer, image)
    cancel = threading.Event()

    def on_step(step) -> None:
        if step.done > 0:
            cancel.set()

    gen = iter_segmentation(
        req, aerial_ckpt, "cpu", tile_size=32, tile_overlap=8, batch_size=1, cancel=cancel
    )
    with pytest.raises(Cancelled, match="re-run resumes"):
        run_to_end(gen, on_step)
    assert not (tmp_path / "scene-outputs" / "scene_labels.tif").exists()
    result = run_to_end(
        iter_segmentation(req, aerial_ckpt, "cpu", tile_size=32, tile_overlap=8, batch_size=1)
    )
    assert Path(result.files[0]).name == "scene_labels.tif"
    assert np.asarray(result.labels[0]).shape == (96, 96)


def test_widget_runs_scene_mode_and_shows_lazy_labels(
    make_napari_viewer, qtbot, scene, aerial_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_plugin._widget import SegNetWidget

    monkeypatch.setattr(reader, "LAZY_PIXELS", 1000)
    monkeypatch.setattr(reader, "CHUNK", 32)
    viewer = make_napari_viewer(show=True)
    (image,) = viewer.open(str(scene[0]), plugin="segnet-domains")
    assert image.multiscale
    widget = SegNetWidget(viewer)
    widget._checkpoint.value = aerial_ckpt
    widget._device.value = "cpu"
    worker = widget.run()
    assert worker is not None, widget.last_error
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    labels = viewer.layers["scene labels"]
    assert labels.multiscale and widget._status.value == "done on cpu"
    qtbot.wait(100)  # let the canvas draw the lazy levels
    shot = viewer.screenshot(canvas_only=True)
    assert shot.shape[0] > 0 and labels.data[0].shape == (96, 96)
