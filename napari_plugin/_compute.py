"""What to segment and running it: the pure part of the widget, no Qt, safe in a worker thread.

* :func:`build_request` (main thread) snapshots what to segment from a napari
  layer: the pixels, the mode (2D image, whole volume, current slice), the
  slicing axis and index.
* :func:`iter_segmentation` (any thread) runs the shared
  :class:`~segnet_domains.inference.Segmenter` on it — one of its generators
  per mode (``iter_uncertainty``, ``iter_proba_tiled``, ``iter_volume``,
  ``iter_slice``; scene mode: the tiler's ``iter_tile_scene``) — yielding
  :class:`Progress` and returning a :class:`SegmentationResult`. CUDA
  out-of-memory is retried with halved batches, then on the CPU.

Monte Carlo dropout is the Segmenter's (Bayesian SegNet, Kendall et al.,
2017, https://arxiv.org/abs/1511.02680); the uncertainty layer shows
:func:`~segnet_domains.inference.class_mean_variance`, the per-class
variance of the softmax samples averaged over classes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from segnet_domains.checkpoint import ModelInfo
from segnet_domains.errors import InputError
from segnet_domains.inference import Segmenter, class_mean_variance, drive, labels_from_proba

from ._scene import iter_scene

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

#: Modes of the widget: a 2D image, a whole volume slice by slice, the slice on screen.
MODES = ("auto", "image", "volume", "slice")
#: Largest layer (pixels × channels) the widget loads into memory; bigger scenes go through the tiling CLI.
MAX_IN_MEMORY = 8192 * 8192 * 3


class Cancelled(Exception):
    """The run was cancelled (scene mode keeps its finished rows; a re-run resumes)."""


class Progress(NamedTuple):
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
    _refuse_too_big(name, data.shape)
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


def _refuse_too_big(name: str, shape: tuple[int, ...]) -> None:
    """Raise :class:`InputError` for a layer above :data:`MAX_IN_MEMORY` values, naming the way out."""
    if int(np.prod(shape)) > MAX_IN_MEMORY:
        raise InputError(
            name,
            f"layer is {'×'.join(map(str, shape))}, too big to segment in memory; "
            "open the scene as a GeoTIFF with this plugin (it is then tiled from the file) "
            "or use `segnet-domains tile`",
        )


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
        InputError: missing, corrupt or foreign checkpoint, or a device that does not exist here.
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
    seg = Segmenter.from_checkpoint(path, device=device)
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

    Stopping iterating cancels the run; closing the generator (the widget does
    once its worker stopped) cleans up at once — scene mode keeps its finished
    rows, so a re-run resumes. On CUDA out-of-memory the run restarts with
    half the batch size, down to 1, then once more on the CPU.

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
        cancel: set it to stop after the current step: the generator then
            closes its work and raises :class:`Cancelled`.

    Raises:
        InputError: missing/corrupt checkpoint, channel mismatch, a model
            without dropout asked for uncertainty, out of memory even on the CPU.
    """
    seg = segmenter if segmenter is not None else load_segmenter(checkpoint, device)
    if uncertainty:
        seg.info.require_dropout(str(checkpoint), hint="; this model has no dropout (untick it)")
    if uncertainty and tile_size and request.mode == "image":
        raise InputError(request.source, "Monte Carlo uncertainty works on whole images; set tile size to 0")
    samples = max(2, int(mc_samples)) if uncertainty else 0
    bs = int(batch_size or seg.batch_size)
    notes: list[str] = []
    while True:
        try:
            run = _run(seg, request, bs, tile_size, tile_overlap, samples, out_dir)
            labels, unc, files = yield from _cancellable(run, cancel, request)
            break
        except torch.OutOfMemoryError:
            seg, bs, note = _after_out_of_memory(seg, bs, checkpoint, batch_size, request.source)
            notes.append(note)
            yield Progress(0, 1, note)
    return SegmentationResult(labels, seg.info, request, str(checkpoint), str(seg.device), unc, notes, files)


def _after_out_of_memory(
    seg: Segmenter, bs: int, checkpoint: str | os.PathLike[str], batch_size: int | None, source: str
) -> tuple[Segmenter, int, str]:
    """``(segmenter, batch size, note)`` to retry with: half the batch, else the CPU.

    Raises:
        InputError: out of memory on the CPU with batch size 1.
    """
    if seg.device.type == "cuda":
        torch.cuda.empty_cache()
    if bs > 1:
        return seg, bs // 2, f"out of memory on {seg.device}; retrying with batch size {bs // 2}"
    if seg.device.type != "cpu":
        note = f"out of memory on {seg.device} even with batch size 1; retrying on the CPU"
        cpu = Segmenter.from_checkpoint(checkpoint, device="cpu")
        return cpu, int(batch_size or cpu.batch_size), note
    raise InputError(source, "out of memory on the CPU even with batch size 1") from None


def _cancellable(
    run: Generator[Progress, None, Any], cancel: threading.Event | None, request: SegmentRequest
) -> Generator[Progress, None, Any]:
    """``run``'s steps; once ``cancel`` is set, close ``run`` (it cleans up) and raise :class:`Cancelled`."""
    try:
        while True:
            try:
                step = next(run)
            except StopIteration as stop:
                return stop.value
            yield step
            if cancel is not None and cancel.is_set():
                if request.mode == "scene":
                    raise Cancelled(
                        f"{request.path}: cancelled; the finished rows are kept and a re-run resumes"
                    )
                raise Cancelled(f"{request.source}: cancelled")
    finally:
        run.close()


def _run(
    seg: Segmenter,
    req: SegmentRequest,
    bs: int,
    tile_size: int | None,
    tile_overlap: int | None,
    samples: int,
    out_dir: str | os.PathLike[str] | None = None,
) -> Generator[Progress, None, tuple[Any, Any, list[str]]]:
    """``(labels, uncertainty or None, files written)`` for any mode, each run by the library's generator."""
    if req.mode == "scene":
        gen = iter_scene(seg, req.path, out_dir, tile_size or None, tile_overlap, bs, samples)  # type: ignore[arg-type]
        return (yield from _steps(gen))
    if req.mode == "volume":
        out = yield from _steps(
            seg.iter_volume(req.data, req.axis, source=req.source, mc_samples=samples, batch_size=bs)
        )
        return (out[0], class_mean_variance(out[2]), []) if samples else (out, None, [])
    if req.mode == "slice":
        labels, unc = yield from _run_slice(seg, req, samples)
        return labels, unc, []
    if tile_size:
        proba = yield from _steps(
            seg.iter_proba_tiled(req.data, tile_size, tile_overlap, bs, source=req.source)
        )
        return labels_from_proba(proba), None, []
    if samples:
        mean, var = yield from _steps(seg.iter_uncertainty(req.data, samples, source=req.source))
        return labels_from_proba(mean), class_mean_variance(var), []
    yield Progress(0, 1)
    labels = seg.predict(req.data, source=req.source)
    yield Progress(1, 1)
    return labels, None, []


def _run_slice(
    seg: Segmenter, req: SegmentRequest, samples: int
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray | None]]:
    """:meth:`Segmenter.iter_slice` placed into a volume of zeros (the layer's shape)."""
    req.axis = seg.volume_axis(req.axis)
    gen = seg.iter_slice(req.data, req.index, req.axis, source=req.source, mc_samples=samples)  # type: ignore[arg-type]
    out = yield from _steps(gen)
    labels2d = out[0] if samples else out
    labels = np.zeros(req.data.shape, labels2d.dtype)
    put_plane(labels, req.axis, req.index, labels2d)  # type: ignore[arg-type]
    unc = None
    if samples:
        unc = np.zeros(req.data.shape, np.float32)
        put_plane(unc, req.axis, req.index, class_mean_variance(out[2]))  # type: ignore[arg-type]
    return labels, unc


def put_plane(volume: np.ndarray, axis: int, index: int, plane: np.ndarray) -> None:
    """Write ``plane`` into ``volume`` at ``index`` along ``axis``."""
    sl: list[Any] = [slice(None)] * volume.ndim
    sl[axis] = index
    volume[tuple(sl)] = plane


def _steps(gen: Generator[Any, None, Any]) -> Generator[Progress, None, Any]:
    """A library generator's ``(done, total, …)`` steps as :class:`Progress`; closing us closes it."""
    try:
        while True:
            try:
                step = next(gen)
            except StopIteration as stop:
                return stop.value
            yield Progress(step[0], step[1])
    finally:
        gen.close()


def run_to_end(
    gen: Generator[Progress, None, SegmentationResult], progress: Callable[[Progress], Any] | None = None
) -> SegmentationResult:
    """Drive :func:`iter_segmentation` synchronously, passing each step to ``progress``."""
    return drive(gen, on_step=progress)
