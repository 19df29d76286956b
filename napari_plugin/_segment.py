"""The headless entry point the "SegNet segmentation" widget wraps: :func:`segment_layer`.

Three steps, so the widget can run the middle one in a thread worker:
:func:`~napari_plugin._compute.build_request` snapshots the layer (main
thread), :func:`~napari_plugin._compute.iter_segmentation` runs the shared
:class:`~segnet_domains.inference.Segmenter` (any thread, yields progress),
:func:`~napari_plugin._layers.add_result` adds the layers (main thread).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from segnet_domains.checkpoint import read_info

from ._compute import Progress, build_request, iter_segmentation, run_to_end
from ._layers import add_result

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels


def segment_layer(
    viewer: napari.Viewer,
    layer: Image,
    checkpoint: str | os.PathLike[str],
    device: str = "auto",
    axis: int | None = None,
    mode: str = "auto",
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    uncertainty: bool = False,
    mc_samples: int = 8,
    batch_size: int | None = None,
    index: int | None = None,
    progress: Callable[[Progress], Any] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> Labels:
    """Segment an Image layer with a SegNet checkpoint and add the result as a Labels layer.

    The headless twin of the "SegNet segmentation" widget (which runs the
    same steps in a thread worker). Past 60 lines only by its documented
    arguments: the body is four statements.

    Args:
        viewer: the napari viewer (or ``ViewerModel``) to add layers to.
        layer: the Image layer to segment.
        checkpoint: path of a segnet-domains checkpoint.
        device: ``"auto"`` (CUDA → MPS → CPU), ``"cpu"``, ``"cuda:1"``, ``"mps"``.
        axis: slicing axis for volumes (default: the checkpoint's, else 2; in
            slice mode: the axis the viewer slices along).
        mode: ``"auto"``, ``"image"`` (2D), ``"volume"`` (all slices) or ``"slice"``
            (the slice on screen, or ``index``). A GeoTIFF the reader opened lazily
            (multiscale) is tiled out of core from its file instead ("scene" mode).
        tile_size: segment big 2D images in tiles of this edge (0/None: whole image).
        tile_overlap: overlap between tiles.
        uncertainty: add a Monte Carlo dropout uncertainty Image layer.
        mc_samples: Monte Carlo passes.
        batch_size: slices/tiles per forward pass.
        index: slice index in slice mode.
        progress: called with each :class:`Progress`.
        out_dir: where scene mode writes ``<stem>_labels.tif`` (default: the user cache dir).

    Returns:
        The Labels layer (named ``"<layer name> labels"``).

    Raises:
        InputError: bad checkpoint, channel mismatch, unusable mode.

    Example:
        >>> segment_layer(viewer, viewer.layers["brain"], "lesions.pt", mode="volume")  # doctest: +SKIP
    """
    info = read_info(checkpoint)
    request = build_request(viewer, layer, mode, axis, index, bands=info.bands)
    gen = iter_segmentation(
        request,
        checkpoint,
        device,
        tile_size,
        tile_overlap,
        uncertainty,
        mc_samples,
        batch_size,
        out_dir=out_dir,
    )
    return add_result(viewer, layer, run_to_end(gen, progress))
