"""What to segment and running it: the pure part of the widget, no Qt, safe in a worker thread.

* :func:`build_request` (main thread) snapshots what to segment from a napari
  layer: the pixels, the mode (2D image, whole volume, current slice), the
  slicing axis and index.
* :func:`iter_segmentation` (any thread) runs the shared
  :class:`~segnet_domains.inference.Segmenter` on it, yielding
  :class:`Progress` and returning a :class:`SegmentationResult`. CUDA
  out-of-memory is retried with halved batches, then on the CPU.

Monte Carlo dropout follows Bayesian SegNet (Kendall et al., 2017,
https://arxiv.org/abs/1511.02680): the uncertainty is the variance of the
softmax samples, averaged over classes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from segnet_domains.adapters import ImageAdapter, VolumeSliceAdapter
from segnet_domains.checkpoint import ModelInfo
from segnet_domains.errors import InputError
from segnet_domains.inference import Segmenter

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

#: Modes of the widget: a 2D image, a whole volume slice by slice, the slice on screen.
MODES = ("auto", "image", "volume", "slice")
#: Largest layer (pixels × channels) the widget loads into memory; bigger scenes go through the tiling CLI.
MAX_IN_MEMORY = 8192 * 8192 * 3


class Cancelled(Exception):
    """The run was cancelled (scene mode keeps its finished rows; a re-run resumes)."""


@dataclass
class Progress:
    """One step of a segmentation run: ``done`` of ``total`` units, with an optional note to show."""

    done: int
    total: int
    message: str | None = None


@dataclass
class SegmentRequest:
    """What to segment, snapshotted from a napari layer on the main thread.

    Attributes:
        data: the layer's pixels (full resolution), as stored in the layer;
            ``None`` in scene mode.
        mode: ``"image"``, ``"volume"``, ``"slice"``, or ``"scene"`` for a lazily
            opened GeoTIFF segmented out of core from its file.
        axis: slicing axis of ``data`` (volume and slice modes); ``None`` = the checkpoint's.
        index: the slice to segment in slice mode.
        source: the layer's name, used in messages.
        rgb: the layer shows ``H×W×C`` colour pixels.
    """

    data: Any
    mode: str
    axis: int | None = None
    index: int | None = None
    source: str = "layer"
    rgb: bool = False
    path: str | None = None


@dataclass
class SegmentationResult:
    """Labels (the request's spatial shape) and, if asked, the Monte Carlo uncertainty.

    In scene mode both are lists of lazily read levels of the files in ``files``.
    """

    labels: Any
    info: ModelInfo
    request: SegmentRequest
    checkpoint: str
    device: str
    uncertainty: Any = None
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- request


def build_request(
    viewer: napari.Viewer | None,
    layer: Image,
    mode: str = "auto",
    axis: int | None = None,
    index: int | None = None,
    bands: int | None = None,
) -> SegmentRequest:
    """Snapshot what to segment from ``layer``.

    Args:
        viewer: the viewer (its dims give the current slice in slice mode).
        layer: a napari Image layer (multiscale layers use their full-resolution level).
        mode: one of :data:`MODES`; ``"auto"`` is ``"image"`` for 2D/colour/multi-band
            layers and ``"volume"`` for 3D ones. A lazily opened GeoTIFF (multiscale
            layer from the reader) in auto/image mode becomes ``"scene"``: it is
            tiled from its file, never loaded.
        axis: slicing axis for volume/slice modes; in slice mode ``None`` means the
            axis the viewer slices along.
        index: slice index for slice mode (default: the one on screen).
        bands: the checkpoint's band count, to tell a ``C×H×W`` image from a volume.

    Raises:
        InputError: a mode that does not fit the layer, or a layer above
            :data:`MAX_IN_MEMORY` values (a lazily opened scene).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    name = layer.name
    data = layer.data[0] if layer.multiscale else layer.data
    scene = (layer.metadata.get("geotiff") or {}).get("path")
    if layer.multiscale and scene and mode in ("auto", "image"):
        return SegmentRequest(None, "scene", source=name, path=scene)
    if int(np.prod(data.shape)) > MAX_IN_MEMORY:
        raise InputError(
            name,
            f"layer is {'×'.join(map(str, data.shape))}, too big to segment in memory; "
            "open the scene as a GeoTIFF with this plugin (it is then tiled from the file) "
            "or use `segnet-domains tile`",
        )
    rgb = bool(getattr(layer, "rgb", False))
    spatial = data.ndim - (1 if rgb else 0)
    layout = (layer.metadata.get("geotiff") or {}).get("layout")
    multiband = layout == "chw" or (
        spatial == 3 and bands is not None and bands > 1 and data.shape[0] == bands
    )
    if mode == "auto":
        mode = "image" if spatial == 2 or multiband else "volume"
    if mode == "image":
        if spatial != 2 and not multiband:
            raise InputError(name, f"layer is {spatial}D {tuple(data.shape)}; use 'volume' or 'slice' mode")
        return SegmentRequest(np.asarray(data), "image", source=name, rgb=rgb)
    if spatial != 3 or rgb or multiband:
        raise InputError(name, f"{mode} mode needs a 3D single-channel volume, layer has shape {data.shape}")
    if mode == "slice":
        if axis is None:
            axis = _viewer_slice_axis(viewer, layer)
        if index is None:
            index = _viewer_slice_index(viewer, layer, axis)
        if not 0 <= index < data.shape[axis]:
            raise InputError(name, f"slice {index} is outside 0..{data.shape[axis] - 1} along axis {axis}")
    return SegmentRequest(np.asarray(data), mode, axis=axis, index=index, source=name)


def _viewer_slice_axis(viewer: napari.Viewer | None, layer: Image) -> int:
    if viewer is None:
        return 0
    order = list(viewer.dims.order)
    hidden = [d for d in order[: len(order) - viewer.dims.ndisplay]]
    offset = viewer.dims.ndim - layer.ndim
    layer_hidden = [d - offset for d in hidden if d >= offset]
    return layer_hidden[-1] if layer_hidden else 0


def _viewer_slice_index(viewer: napari.Viewer | None, layer: Image, axis: int) -> int:
    if viewer is None:
        return layer.data.shape[axis] // 2
    point = np.asarray(viewer.dims.point)[-layer.ndim :]
    pos = np.asarray(layer.world_to_data(point))
    return int(np.clip(np.round(pos[axis]), 0, layer.data.shape[axis] - 1))


# --------------------------------------------------------------------------- run


_CACHE: OrderedDict[tuple[Any, ...], Segmenter] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def load_segmenter(checkpoint: str | os.PathLike[str], device: str = "auto") -> Segmenter:
    """A :class:`Segmenter` for ``checkpoint`` on ``device``, cached while the file is unchanged.

    The widget re-runs on the same checkpoint often; caching skips loading,
    BatchNorm folding and the copy to the device. Two entries are kept.

    Raises:
        CheckpointError: missing, corrupt or foreign checkpoint.
    """
    path = Path(checkpoint).expanduser()
    try:
        stat = path.stat()
        key: tuple[Any, ...] = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, device)
    except OSError:
        key = (str(path), None, None, device)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    try:
        seg = Segmenter.from_checkpoint(path, device=device)
    except ValueError as exc:  # unknown/unavailable device
        raise InputError(str(path), str(exc)) from None
    with _CACHE_LOCK:
        _CACHE[key] = seg
        while len(_CACHE) > 2:
            _CACHE.popitem(last=False)
    return seg


def iter_segmentation(
    request: SegmentRequest,
    checkpoint: str | os.PathLike[str],
    device: str = "auto",
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    uncertainty: bool = False,
    mc_samples: int = 8,
    batch_size: int | None = None,
    segmenter: Segmenter | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    cancel: threading.Event | None = None,
) -> Generator[Progress, None, SegmentationResult]:
    """Segment ``request``; yields :class:`Progress`, returns a :class:`SegmentationResult`.

    Closing the generator (napari's ``worker.quit()``) stops the work at the
    next batch. On CUDA out-of-memory the run restarts with half the batch
    size, down to 1, then once more on the CPU.

    Args:
        request: from :func:`build_request`.
        checkpoint: a segnet-domains checkpoint.
        device: ``"auto"``, ``"cpu"``, ``"cuda:0"``, ``"mps"`` …
        tile_size: for 2D images, segment in tiles of this edge (0/None: whole image).
        tile_overlap: overlap between tiles (default: the checkpoint's, else tile_size // 4).
        uncertainty: Monte Carlo dropout (the model must have dropout).
        mc_samples: Monte Carlo passes.
        batch_size: slices/tiles per forward pass (default: the segmenter's).
        segmenter: reuse this segmenter instead of loading ``checkpoint``.
        out_dir: scene mode's output folder (default: :func:`~napari_plugin._scene.scene_output_dir`).
        cancel: set to stop scene mode's tiler thread (the widget's Cancel does).

    Raises:
        InputError: missing/corrupt checkpoint, channel mismatch, a model
            without dropout asked for uncertainty, out of memory even on the CPU.
    """
    seg = segmenter if segmenter is not None else load_segmenter(checkpoint, device)
    if uncertainty and not seg.has_dropout:
        raise InputError(
            str(checkpoint), "the model has no dropout, so it gives no Monte Carlo uncertainty (untick it)"
        )
    if uncertainty and tile_size and request.mode == "image":
        raise InputError(request.source, "Monte Carlo uncertainty works on whole images; set tile size to 0")
    samples = max(2, int(mc_samples)) if uncertainty else 0
    bs = int(batch_size or seg.batch_size)
    notes: list[str] = []
    while True:
        try:
            labels, unc, files = yield from _run(
                seg, request, bs, tile_size, tile_overlap, samples, out_dir, cancel
            )
            break
        except torch.OutOfMemoryError:
            if seg.device.type == "cuda":
                torch.cuda.empty_cache()
            if bs > 1:
                bs //= 2
                note = f"out of memory on {seg.device}; retrying with batch size {bs}"
            elif seg.device.type != "cpu":
                note = f"out of memory on {seg.device} even with batch size 1; retrying on the CPU"
                seg = Segmenter.from_checkpoint(checkpoint, device="cpu")
                bs = int(batch_size or seg.batch_size)
            else:
                raise InputError(request.source, "out of memory on the CPU even with batch size 1") from None
            notes.append(note)
            yield Progress(0, 1, note)
    return SegmentationResult(
        labels=labels,
        info=seg.info,
        request=request,
        checkpoint=str(checkpoint),
        device=str(seg.device),
        uncertainty=unc,
        notes=notes,
        files=files,
    )


def _run(
    seg: Segmenter,
    req: SegmentRequest,
    bs: int,
    tile_size: int | None,
    tile_overlap: int | None,
    samples: int,
    out_dir: str | os.PathLike[str] | None = None,
    cancel: threading.Event | None = None,
) -> Generator[Progress, None, tuple[Any, Any, list[str]]]:
    """``(labels, uncertainty or None, files written)`` for any mode."""
    if req.mode == "scene":
        return (yield from _run_scene(seg, req, bs, tile_size, tile_overlap, samples, out_dir, cancel))
    labels, unc = yield from _run_in_memory(seg, req, bs, tile_size, tile_overlap, samples)
    return labels, unc, []


def _run_in_memory(
    seg: Segmenter,
    req: SegmentRequest,
    bs: int,
    tile_size: int | None,
    tile_overlap: int | None,
    samples: int,
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray | None]]:
    if req.mode == "volume":
        gen = seg.iter_volume(req.data, req.axis, source=req.source, mc_samples=samples, batch_size=bs)
        out = yield from _progress(gen)
        if samples:
            labels, _, var = out
            return labels, var.mean(0)
        return out, None
    if req.mode == "slice":
        return (yield from _run_slice(seg, req, samples))
    if tile_size:
        from segnet_domains.tiling import iter_proba_tiled

        gen = iter_proba_tiled(seg, req.data, tile_size, tile_overlap, bs, source=req.source)
        proba = yield from _progress(gen)
        return _argmax(proba), None
    x = ImageAdapter(seg.info.in_channels, seg.info.normalization)(req.data, req.source)[None]
    return (yield from _sample(seg, x, samples))


def _run_scene(
    seg: Segmenter,
    req: SegmentRequest,
    bs: int,
    tile_size: int | None,
    tile_overlap: int | None,
    samples: int,
    out_dir: str | os.PathLike[str] | None,
    cancel: threading.Event | None,
) -> Generator[Progress, None, tuple[list[Any], list[Any] | None, list[str]]]:
    """Tile the layer's file out of core; the results come back as lazily read pyramids."""
    from ._reader import open_pyramid
    from ._scene import iter_tile_scene

    result = yield from iter_tile_scene(
        seg,
        req.path,  # type: ignore[arg-type]
        out_dir,
        tile_size or None,
        tile_overlap,
        bs,
        samples,
        cancel,
    )
    files = list(result.outputs)
    unc = open_pyramid(files[-1]) if samples else None
    return open_pyramid(files[0]), unc, files


def _run_slice(
    seg: Segmenter, req: SegmentRequest, samples: int
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray | None]]:
    """One slice with the checkpoint's 2.5D neighbours, normalised with whole-volume statistics.

    Gives exactly the volume mode's result at that slice.
    """
    info = seg.info
    if info.bands != 1:
        raise InputError(req.source, f"a volume has 1 channel but the checkpoint expects {info.bands}")
    axis = req.axis if req.axis is not None else (info.slice_axis if info.slice_axis is not None else 2)
    adapter = VolumeSliceAdapter(axis, info.context, info.normalization)
    yield Progress(0, max(1, samples))
    slices = adapter.prepare(req.data, req.source)
    n, k = slices.shape[0], info.context
    idx = np.clip(np.arange(req.index - k, req.index + k + 1), 0, n - 1)  # type: ignore[operator]
    x = slices[idx][None]
    labels2d, unc2d = yield from _sample(seg, x, samples)
    shape = req.data.shape
    labels = np.zeros(shape, labels2d.dtype)
    put_plane(labels, axis, req.index, labels2d)  # type: ignore[arg-type]
    unc = None
    if unc2d is not None:
        unc = np.zeros(shape, np.float32)
        put_plane(unc, axis, req.index, unc2d)  # type: ignore[arg-type]
    req.axis = axis
    return labels, unc


def put_plane(volume: np.ndarray, axis: int, index: int, plane: np.ndarray) -> None:
    sl: list[Any] = [slice(None)] * volume.ndim
    sl[axis] = index
    volume[tuple(sl)] = plane


def _sample(
    seg: Segmenter, x: np.ndarray, samples: int
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray | None]]:
    if not samples:
        yield Progress(0, 1)
        proba = seg.forward(x)[0].numpy()
        yield Progress(1, 1)
        return _argmax(proba), None
    draws = []
    yield Progress(0, samples)
    for s in range(samples):
        draws.append(seg.forward(x, mc_dropout=True)[0])
        yield Progress(s + 1, samples)
    stack = torch.stack(draws)
    return _argmax(stack.mean(0).numpy()), stack.var(0, unbiased=False).mean(0).numpy()


def _progress(gen: Generator[tuple[int, int], None, Any]) -> Generator[Progress, None, Any]:
    """Turn a ``(done, total)`` generator into :class:`Progress`, closing it when we are closed."""
    try:
        while True:
            done, total = next(gen)
            yield Progress(done, total)
    except StopIteration as stop:
        return stop.value
    finally:
        gen.close()


def _argmax(proba: np.ndarray) -> np.ndarray:
    return proba.argmax(0).astype(np.uint8 if proba.shape[0] <= 256 else np.int32)


def run_to_end(
    gen: Generator[Progress, None, SegmentationResult], progress: Callable[[Progress], Any] | None = None
) -> SegmentationResult:
    """Drive :func:`iter_segmentation` synchronously, passing each step to ``progress``."""
    try:
        while True:
            step = next(gen)
            if progress is not None:
                progress(step)
    except StopIteration as stop:
        return stop.value
