"""One raster-metadata convention: label GeoTIFFs from the tiler's RowStore and from napari's writer
read back alike with ``open_scene`` and the napari reader (CRS, transform, class names, colours, nodata)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from napari_plugin._reader import read_geotiff
from napari_plugin._writer import write_labels_geotiff
from segnet_domains.geo.outputs import (
    CLASS_NAMES_TAG,
    LABEL_NODATA,
    OutputPaths,
    RowStore,
    label_metadata,
    read_label_metadata,
)
from segnet_domains.geo.scene import open_scene
from tests.napari_plugin.data import write_geotiff

NAMES = ["soil", "water, deep", "built"]  # a comma inside a name survives the JSON tag
COLORS = [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
H, W = 48, 64
TRANSFORM = Affine(0.5, 0.0, 500123.25, 0.0, -0.5, 4650987.75)


def _labels() -> np.ndarray:
    labels = (np.arange(H * W).reshape(H, W) % 3).astype(np.uint8)
    labels[:4, :5] = LABEL_NODATA  # outside the scene's footprint
    return labels


def _write_with_rowstore(tmp_path: Path, source: Path) -> Path:
    scene = open_scene(source)
    store = RowStore(tmp_path / ".work", H, W, classes=3, proba=False, uncertainty=False)
    store.open(fresh=True)
    store.write_rows(0, {"labels": _labels()[:20]})
    store.write_rows(20, {"labels": _labels()[20:]})
    paths = OutputPaths.for_scene(tmp_path, "tiled", proba=False, uncertainty=False)
    store.finalize(paths, scene.crs, scene.transform, NAMES, COLORS, {"RUN": "1"})
    store.discard()
    return paths.labels


def _write_with_napari(tmp_path: Path, source: Path) -> Path:
    ((_, kwargs, _),) = read_geotiff(str(source))
    meta = {**kwargs["metadata"], "segnet_domains": {"class_names": NAMES, "class_colors": COLORS}}
    out = tmp_path / "drawn.tif"
    write_labels_geotiff(str(out), _labels(), {"name": "labels", "metadata": meta})
    return out


@pytest.mark.parametrize("write", [_write_with_rowstore, _write_with_napari], ids=["tiler", "napari"])
def test_label_rasters_read_back_alike(write, tmp_path: Path) -> None:
    source = write_geotiff(tmp_path / "scene.tif", np.zeros((3, H, W), np.uint8))
    out = write(tmp_path, source)
    scene = open_scene(out)
    src_scene = open_scene(source)
    assert scene.crs == src_scene.crs and scene.affine == TRANSFORM == src_scene.affine
    assert scene.transform == TRANSFORM.to_gdal()
    assert scene.nodata == LABEL_NODATA and scene.dtype == "uint8"
    ((data, kwargs, _),) = read_geotiff(str(out))
    geo = kwargs["metadata"]["geotiff"]
    assert isinstance(geo["transform"], Affine) and geo["transform"] == TRANSFORM
    assert geo["crs"] == src_scene.crs and geo["nodata"] == LABEL_NODATA
    assert geo["class_names"] == NAMES and geo["class_colors"] == COLORS
    np.testing.assert_array_equal(data, _labels())
    with rasterio.open(out) as src:
        assert json.loads(src.tags()[CLASS_NAMES_TAG]) == NAMES
        cmap = src.colormap(1)
        assert [cmap[i] for i in range(3)] == [(*c, 255) for c in COLORS]
        assert cmap[LABEL_NODATA] == (0, 0, 0, 0)
        assert read_label_metadata(src) == label_metadata(NAMES, COLORS)


def test_older_napari_files_class_names_are_read(tmp_path: Path) -> None:
    """Before one convention, napari's writer kept the names in a comma-joined band tag ``classes``."""
    old = write_geotiff(tmp_path / "old.tif", np.ones((1, 8, 8), np.uint8))
    with rasterio.open(old, "r+") as dst:
        dst.update_tags(1, classes="background,lesion")
        dst.write_colormap(1, {0: (0, 0, 0, 255), 1: (255, 0, 0, 255)})
    with rasterio.open(old) as src:
        meta = read_label_metadata(src)
    assert meta.class_names == ("background", "lesion")
    assert meta.class_colors == ((0, 0, 0), (255, 0, 0)) and meta.nodata is None
    ((_, kwargs, _),) = read_geotiff(str(old))
    assert kwargs["metadata"]["geotiff"]["class_names"] == ["background", "lesion"]
