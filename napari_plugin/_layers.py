"""Results into napari layers: Labels named after the source, with its classes and the source geometry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from segnet_domains.checkpoint import ModelInfo

from ._compute import SegmentationResult, put_plane

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

#: Metadata key under which the plugin records what produced a layer.
META_KEY = "segnet_domains"


def label_colormap(info: ModelInfo) -> Any:
    """A napari ``DirectLabelColormap`` with the checkpoint's class colours (class 0 transparent)."""
    from napari.utils.colormaps import DirectLabelColormap

    colors: dict[int | None, Any] = {None: np.zeros(4, np.float32), 0: np.zeros(4, np.float32)}
    for i, rgb in enumerate(info.class_colors):
        if i == 0:
            continue
        colors[i] = np.array([*(c / 255 for c in rgb[:3]), 1.0], np.float32)
    return DirectLabelColormap(color_dict=colors)


def class_features(info: ModelInfo) -> Any:
    """The Labels features table: one row per class (``index``, ``class_name``)."""
    import pandas as pd

    return pd.DataFrame({"index": np.arange(info.out_channels), "class_name": info.class_names})


def _geometry(layer: Image, ndim: int) -> dict[str, Any]:
    """The source layer's scale/translate/affine for a result with ``ndim`` spatial dims."""
    drop = layer.ndim - ndim  # leading channel axis of a C×H×W layer
    keep = list(range(drop, layer.ndim))
    aff = np.asarray(layer.affine.affine_matrix)
    idx = [*keep, layer.ndim]
    geo: dict[str, Any] = {
        "scale": np.asarray(layer.scale)[keep],
        "translate": np.asarray(layer.translate)[keep],
        "affine": aff[np.ix_(idx, idx)],
    }
    if drop == 0:
        geo["rotate"] = layer.rotate
        geo["shear"] = layer.shear
    return geo


def _level0(data: Any) -> tuple[bool, tuple[int, ...]]:
    """``(multiscale, full-resolution shape)`` of layer data or a result."""
    if (
        isinstance(data, list | tuple)
        or getattr(data, "multiscale", False)
        or type(data).__name__ == "MultiScaleData"
    ):
        return True, tuple(data[0].shape)
    return False, tuple(data.shape)


def add_result(viewer: napari.Viewer, layer: Image, result: SegmentationResult) -> Labels:
    """Add (or update) ``"<layer> labels"`` and, with uncertainty, ``"<layer> uncertainty"``.

    A Labels layer of the same name and shape is updated in place (in slice
    mode only the segmented slice changes), so re-running does not pile up
    layers. Scene results arrive as lazily read pyramids and make multiscale
    layers.

    Returns:
        The Labels layer.
    """
    from napari.layers import Labels

    info, labels = result.info, result.labels
    multiscale, shape = _level0(labels)
    name = f"{layer.name} labels"
    meta = _result_metadata(layer, result)
    existing = next((lyr for lyr in viewer.layers if lyr.name == name), None)
    if isinstance(existing, Labels) and _level0(existing.data) == (multiscale, shape):
        out = _update_labels(existing, result, meta, multiscale)
    else:
        out = viewer.add_labels(
            labels,
            name=name,
            colormap=label_colormap(info),
            features=class_features(info),
            metadata=meta,
            opacity=0.6,
            multiscale=multiscale,
            **_geometry(layer, len(shape)),
        )
    if result.uncertainty is not None:
        _add_uncertainty(viewer, layer, result)
    return out


def _result_metadata(layer: Image, result: SegmentationResult) -> dict:
    """The source layer's metadata plus what produced the labels (under :data:`META_KEY`)."""
    info, req = result.info, result.request
    return {
        **{k: v for k, v in layer.metadata.items() if k != META_KEY},
        META_KEY: {
            "checkpoint": result.checkpoint,
            "class_names": list(info.class_names),
            "class_colors": [list(c) for c in info.class_colors],
            "source_layer": layer.name,
            "mode": req.mode,
            "axis": req.axis,
            "index": req.index,
            "device": result.device,
            "files": list(result.files),
        },
    }


def _update_labels(existing: Labels, result: SegmentationResult, meta: dict, multiscale: bool) -> Labels:
    """Put a new result into an existing Labels layer of the same shape (a slice only changes its plane)."""
    req, labels, info = result.request, result.labels, result.info
    if req.mode == "slice":
        put_plane(existing.data, req.axis, req.index, np.take(labels, req.index, axis=req.axis))  # type: ignore[arg-type]
        existing.refresh()
    elif multiscale:
        existing.data = labels
    else:
        existing.data = labels.astype(existing.data.dtype, copy=False)
    old = existing.metadata.get(META_KEY) or {}
    if (old.get("class_names"), old.get("class_colors")) != (
        meta[META_KEY]["class_names"],
        meta[META_KEY]["class_colors"],
    ):  # another checkpoint: new classes (each setter redraws, so only when needed)
        existing.colormap = label_colormap(info)
        existing.features = class_features(info)
    existing.metadata.update(meta)
    return existing


def _add_uncertainty(viewer: napari.Viewer, layer: Image, result: SegmentationResult) -> None:
    """Add or update ``"<layer> uncertainty"`` (the Monte Carlo variance, magma, additive)."""
    unc = result.uncertainty
    u_multi, u_shape = _level0(unc)
    uname = f"{layer.name} uncertainty"
    old_unc = next((lyr for lyr in viewer.layers if lyr.name == uname), None)
    if old_unc is not None and _level0(old_unc.data) == (u_multi, u_shape):
        old_unc.data = unc
        return
    viewer.add_image(
        unc,
        name=uname,
        colormap="magma",
        blending="additive",
        opacity=0.7,
        multiscale=u_multi,
        metadata={META_KEY: {"checkpoint": result.checkpoint, "samples": "mean softmax variance"}},
        **_geometry(layer, len(u_shape)),
    )


_LABELS_WARM = False


def warm_up_labels(viewer: napari.Viewer) -> None:
    """Pay napari's one-time cost of a first Labels layer now, not when a result arrives.

    The first Labels layer of a process builds vispy visuals (its editing
    polygon overlay) on the UI thread: ~0.35 s here, against ~0.06 s for any
    later one. Adding and removing a hidden 2×2 layer when the widget opens
    moves that pause out of the segmentation run. The selection is restored.
    """
    global _LABELS_WARM
    if _LABELS_WARM:
        return
    selected, active = set(viewer.layers.selection), viewer.layers.selection.active
    probe = viewer.add_labels(np.zeros((2, 2), np.uint8), name="segnet-domains warm-up", visible=False)
    viewer.layers.remove(probe)
    viewer.layers.selection.update(selected)
    viewer.layers.selection.active = active
    _LABELS_WARM = True
