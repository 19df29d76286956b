"""The headless ``segment_layer``: same numbers as the library path, geometry and classes on the layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from napari.layers import Labels

from napari_plugin import segment_layer
from napari_plugin._compute import build_request, iter_segmentation, load_segmenter, run_to_end
from napari_plugin._reader import read_geotiff, read_nifti
from segnet_domains import Segmenter
from segnet_domains.errors import CheckpointError, InputError
from tests.napari_plugin.data import open_in_viewer


def test_volume_mode_matches_segmenter_and_keeps_geometry(mri, lesion_checkpoint: Path) -> None:
    path, ras, mask = mri
    viewer, image = open_in_viewer(read_nifti(str(path))[0])
    steps = []
    labels = segment_layer(
        viewer, image, lesion_checkpoint, device="cpu", mode="volume", progress=steps.append
    )
    assert isinstance(labels, Labels) and labels.name == "flair labels"
    expected = Segmenter.from_checkpoint(lesion_checkpoint, device="cpu").predict_volume(ras, axis=2)
    np.testing.assert_array_equal(labels.data, expected)
    assert (labels.data * mask).sum() > 0.3 * mask.sum()  # the trained model finds the lesions
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    np.testing.assert_allclose(labels.affine.affine_matrix, image.affine.affine_matrix)
    assert labels.metadata["nifti"]["stored_axcodes"] == ["P", "L", "S"]  # geometry for the writer
    # classes and colours from the checkpoint
    assert list(labels.features["class_name"]) == ["background", "lesion"]
    np.testing.assert_allclose(
        labels.colormap.map(np.array([1]))[0], [1.0, 40 / 255, 40 / 255, 1.0], atol=1e-6
    )
    assert labels.colormap.map(np.array([0]))[0][3] == 0  # background transparent
    # progress counted the slices along the checkpoint's axis (2)
    assert steps[0].done == 0 and steps[-1].done == steps[-1].total == ras.shape[2]
    # running again updates the same layer instead of adding another
    again = segment_layer(viewer, image, lesion_checkpoint, device="cpu", mode="volume")
    assert again is labels and len(viewer.layers) == 2


@pytest.mark.parametrize("axis", [0, 2])
def test_slice_mode_equals_volume_mode_at_that_slice(mri, lesion_checkpoint: Path, axis: int) -> None:
    path, ras, _ = mri
    viewer, image = open_in_viewer(read_nifti(str(path))[0])
    index = ras.shape[axis] // 2 + 1
    labels = segment_layer(
        viewer, image, lesion_checkpoint, device="cpu", mode="slice", axis=axis, index=index
    )
    full = Segmenter.from_checkpoint(lesion_checkpoint, device="cpu").predict_volume(ras, axis=axis)
    np.testing.assert_array_equal(np.take(labels.data, index, axis), np.take(full, index, axis))
    others = np.delete(labels.data, index, axis)
    assert not others.any()  # only the requested slice was segmented


def test_slice_mode_follows_the_viewer(mri, lesion_checkpoint: Path) -> None:
    path, _, _ = mri
    viewer, image = open_in_viewer(read_nifti(str(path))[0])
    viewer.dims.order = (2, 0, 1)  # slicing along axis 2
    viewer.dims.set_current_step(2, 17)
    req = build_request(viewer, image, "slice")
    assert (req.axis, req.index) == (2, 17)


def test_image_mode_rgb_scene_and_tiles(scene, untrained_checkpoint) -> None:
    path, rgb = scene
    ckpt = untrained_checkpoint(3, 5, name="rgb5.pt", normalization={"mode": "scale", "scale": 255})
    viewer, image = open_in_viewer(read_geotiff(str(path))[0])
    labels = segment_layer(viewer, image, ckpt, device="cpu")
    seg = Segmenter.from_checkpoint(ckpt, device="cpu")
    np.testing.assert_array_equal(labels.data, seg.predict(rgb))
    assert labels.data.shape == rgb.shape[:2] and labels.metadata["geotiff"]["layout"] == "hwc"
    assert tuple(labels.scale) == (0.5, 0.5)
    tiled = segment_layer(viewer, image, ckpt, device="cpu", tile_size=64, tile_overlap=16)
    proba = seg.predict_proba_tiled(rgb, 64, 16)
    np.testing.assert_array_equal(tiled.data, proba.argmax(0))


def test_channel_mismatch_and_missing_checkpoint(scene, mri, untrained_checkpoint, tmp_path: Path) -> None:
    ckpt = untrained_checkpoint(1, 2, name="gray.pt")
    viewer, image = open_in_viewer(read_geotiff(str(scene[0]))[0])
    with pytest.raises(InputError, match="3 channel.*expects 1"):
        segment_layer(viewer, image, ckpt, device="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        segment_layer(viewer, image, tmp_path / "nope.pt")
    viewer, volume = open_in_viewer(read_nifti(str(mri[0]))[0])
    with pytest.raises(InputError, match="use 'volume' or 'slice'"):
        segment_layer(viewer, volume, ckpt, mode="image")
    assert [ly.name for ly in viewer.layers] == ["flair"]  # nothing half-added


def test_monte_carlo_uncertainty_layer(mri, lesion_checkpoint: Path, untrained_checkpoint) -> None:
    path, ras, _ = mri
    viewer, image = open_in_viewer(read_nifti(str(path))[0])
    torch.manual_seed(0)
    labels = segment_layer(
        viewer,
        image,
        lesion_checkpoint,
        device="cpu",
        mode="slice",
        axis=2,
        index=18,
        uncertainty=True,
        mc_samples=4,
    )
    unc = viewer.layers["flair uncertainty"]
    assert unc.data.shape == ras.shape and unc.data.dtype == np.float32
    plane = unc.data[:, :, 18]
    assert plane.max() > 0 and (unc.data[:, :, 17] == 0).all()
    # uncertainty concentrates where the model is unsure: lesion borders, not empty background
    assert plane[labels.data[:, :, 18] == 1].mean() > plane[ras[:, :, 18] < 50].mean()
    np.testing.assert_allclose(unc.scale, image.scale)
    no_dropout = untrained_checkpoint(1, 2, name="nodrop.pt")
    with pytest.raises(InputError, match="no dropout"):
        segment_layer(viewer, image, no_dropout, mode="slice", uncertainty=True)


class _OOMSegmenter(Segmenter):
    """A segmenter whose device runs out of memory above ``limit`` slices per batch (or always)."""

    limit = 2
    calls: list[int]

    def _on_device(self, batch, mc_dropout: bool = False, scores: bool = False):  # type: ignore[override]
        self.calls.append(len(batch))  # every pass of the model goes through here
        if self.limit is None or len(batch) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super()._on_device(batch, mc_dropout, scores)


def test_out_of_memory_halves_batches_then_falls_back_to_cpu(mri, lesion_checkpoint: Path) -> None:
    path, ras, _ = mri
    viewer, image = open_in_viewer(read_nifti(str(path))[0])
    req = build_request(viewer, image, "volume", 2)
    expected = Segmenter.from_checkpoint(lesion_checkpoint, device="cpu").predict_volume(ras, axis=2)

    seg = _OOMSegmenter.from_checkpoint(lesion_checkpoint, device="cpu", batch_size=8)
    seg.calls = []
    notes = []
    result = run_to_end(
        iter_segmentation(req, lesion_checkpoint, segmenter=seg),
        lambda p: p.message and notes.append(p.message),
    )
    np.testing.assert_array_equal(result.labels, expected)
    assert notes == [f"out of memory on cpu; retrying with batch size {n}" for n in (4, 2)]
    assert seg.calls[:3] == [8, 4, 2]

    # a device that fails even with batch size 1 hands over to the CPU
    gpu = _OOMSegmenter.from_checkpoint(lesion_checkpoint, device="cpu", batch_size=2)
    gpu.calls, gpu.limit, gpu.backend.device = [], None, torch.device("cuda", 0)  # stands in for a full GPU
    notes.clear()
    result = run_to_end(
        iter_segmentation(req, lesion_checkpoint, segmenter=gpu),
        lambda p: p.message and notes.append(p.message),
    )
    np.testing.assert_array_equal(result.labels, expected)
    assert result.device == "cpu" and "retrying on the CPU" in notes[-1]


def test_segmenter_cache_reloads_changed_checkpoint(untrained_checkpoint) -> None:
    ckpt = untrained_checkpoint(1, 2, name="cache.pt")
    a = load_segmenter(ckpt, "cpu")
    assert load_segmenter(ckpt, "cpu") is a
    ckpt.touch()
    import os

    st = ckpt.stat()
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert load_segmenter(ckpt, "cpu") is not a


@pytest.mark.gpu
def test_headless_on_cuda_uses_mixed_precision(mri, lesion_checkpoint: Path) -> None:
    path, ras, _ = mri
    viewer, image = open_in_viewer(read_nifti(str(path))[0])
    seg = load_segmenter(lesion_checkpoint, "cuda:0")
    assert seg.device.type == "cuda" and seg.dtype in (torch.bfloat16, torch.float16)
    labels = segment_layer(viewer, image, lesion_checkpoint, device="cuda:0", mode="volume")
    assert labels.metadata["segnet_domains"]["device"] == "cuda:0"
    fp32 = Segmenter.from_checkpoint(lesion_checkpoint, device="cpu", precision="fp32")
    assert (labels.data == fp32.predict_volume(ras, axis=2)).mean() > 0.995


def test_layers_too_big_for_memory_are_refused(mri, monkeypatch: pytest.MonkeyPatch) -> None:
    import napari_plugin._compute as compute

    viewer, image = open_in_viewer(read_nifti(str(mri[0]))[0])
    monkeypatch.setattr(compute, "MAX_IN_MEMORY", 1000)
    with pytest.raises(InputError, match=r"flair: layer is 40×48×36, too big to segment in memory"):
        build_request(viewer, image, "volume")
