"""Hostile files for the napari readers and writers (called as napari calls them; no viewer needed).

A reader returns ``None`` for a path it cannot read (napari then tries
others) and never blocks on a FIFO; a file it accepted but cannot load
raises one :class:`InputError` line naming it. A writer never writes over
the layer's source file, a folder, a FIFO or a foreign file.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_plugin._reader import get_geotiff_reader, get_nifti_reader, read_geotiff, read_nifti
from napari_plugin._writer import write_labels_geotiff, write_labels_nifti
from segnet_domains.errors import InputError
from tests.data.geo import truncate
from tests.hostile.conftest import fifo, nifti, scene, snapshot


def _claiming(path: Path) -> Path:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((32000, 32000, 32000))
    hdr.set_data_dtype(np.int16)
    path.write_bytes(gzip.compress(hdr.binaryblock + b"\0" * 4100))
    return path


NOT_OURS = {  # name → make(folder) → path a reader must decline (None)
    "nifti-fifo": lambda w: fifo(w / "f.nii"),
    "nifti-folder": lambda w: (w / "d.nii.gz").mkdir() or w / "d.nii.gz",
    "nifti-text": lambda w: (w / "t.nii").write_text("no") and w / "t.nii",
    "nifti-missing": lambda w: w / "none.nii.gz",
    "nifti-empty": lambda w: (w / "e.nii").write_bytes(b"") is not None and w / "e.nii",
    "tiff-fifo": lambda w: fifo(w / "f.tif"),
    "tiff-folder": lambda w: (w / "d.tif").mkdir() or w / "d.tif",
    "tiff-text": lambda w: (w / "t.tif").write_text("no") and w / "t.tif",
    "tiff-missing": lambda w: w / "none.tif",
}

UNLOADABLE = {  # name → (make(folder), text in the error line): accepted by the header, refused on reading
    "nifti-claims-32000-cubed": (lambda w: _claiming(w / "big.nii.gz"), "32000×32000×32000"),
    "nifti-truncated-data": (
        lambda w: (
            (w / "cut.nii.gz").write_bytes(nifti(w / "full.nii.gz", (30, 30, 30)).read_bytes()[:3000])
            and w / "cut.nii.gz"
        ),
        "cut.nii.gz",
    ),
    "nifti-4d": (lambda w: nifti(w / "d4.nii.gz", (5, 5, 5, 2)), "4D"),
    "tiff-truncated": (lambda w: truncate(scene(w / "s.tif", 300), w / "cut.tif", 0.2), "cut.tif"),
}


@pytest.mark.parametrize("name", list(NOT_OURS))
def test_reader_declines(name: str, tmp_path: Path) -> None:
    path = NOT_OURS[name](tmp_path)
    before = snapshot(tmp_path)
    reader = get_nifti_reader if name.startswith("nifti") else get_geotiff_reader
    assert reader(str(path)) is None
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", list(UNLOADABLE))
def test_reader_refuses_in_one_line(name: str, tmp_path: Path) -> None:
    make, text = UNLOADABLE[name]
    path = make(tmp_path)
    before = snapshot(tmp_path)
    get = get_nifti_reader if name.startswith("nifti") else get_geotiff_reader
    reader = get(str(path)) or (read_nifti if name.startswith("nifti") else read_geotiff)
    with pytest.raises(InputError) as err:
        reader(str(path))
    line = str(err.value)
    assert "\n" not in line and line.startswith(str(path)) and text in line, line
    assert snapshot(tmp_path) == before


def _nifti_layer(tmp_path: Path) -> tuple[np.ndarray, dict]:
    src = nifti(tmp_path / "t1.nii.gz", (8, 9, 7))
    ((data, kwargs, _),) = read_nifti(str(src))
    return np.zeros(data.shape, np.uint8), {"name": "t1 labels", "metadata": kwargs["metadata"]}


def _geo_layer(tmp_path: Path) -> tuple[np.ndarray, dict]:
    src = scene(tmp_path / "s.tif", 40)
    ((data, kwargs, _),) = read_geotiff(str(src))
    return np.zeros(data.shape[-2:], np.uint8), {"name": "s labels", "metadata": kwargs["metadata"]}


WRITES = {  # name → (layer maker, writer, target(folder), text in the error line)
    "nifti-over-its-source": (
        _nifti_layer,
        write_labels_nifti,
        lambda w: w / "t1.nii.gz",
        "is also an input",
    ),
    "nifti-into-a-folder": (
        _nifti_layer,
        write_labels_nifti,
        lambda w: _mkdir(w / "m.nii.gz"),
        "is a folder",
    ),
    "nifti-into-a-fifo": (_nifti_layer, write_labels_nifti, lambda w: fifo(w / "m.nii"), "FIFO"),
    "nifti-over-a-foreign-file": (
        _nifti_layer,
        write_labels_nifti,
        lambda w: _write(w / "m.nii.gz"),
        "not a NIfTI mask",
    ),
    "nifti-as-png": (_nifti_layer, write_labels_nifti, lambda w: w / "m.png", "unknown format .png"),
    "geotiff-over-its-source": (_geo_layer, write_labels_geotiff, lambda w: w / "s.tif", "is also an input"),
    "geotiff-into-a-folder": (_geo_layer, write_labels_geotiff, lambda w: _mkdir(w / "m.tif"), "is a folder"),
    "geotiff-over-a-foreign-file": (
        _geo_layer,
        write_labels_geotiff,
        lambda w: _write(w / "m.tif"),
        "not a GeoTIFF",
    ),
    "geotiff-missing-folder": (
        _geo_layer,
        write_labels_geotiff,
        lambda w: w / "no" / "m.tif",
        "does not exist",
    ),
}


def _mkdir(p: Path) -> Path:
    p.mkdir()
    return p


def _write(p: Path) -> Path:
    p.write_text("my notes")
    return p


@pytest.mark.parametrize("name", list(WRITES))
def test_writer_refuses(name: str, tmp_path: Path) -> None:
    make_layer, write, target, text = WRITES[name]
    data, meta = make_layer(tmp_path)
    path = target(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as err:
        write(str(path), data, meta)
    assert "\n" not in str(err.value) and text in str(err.value), str(err.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("write", ["nifti", "geotiff"])
def test_writer_replaces_its_own_kind(write: str, tmp_path: Path) -> None:
    """napari's Save dialog has asked already: a mask of ours is replaced, atomically."""
    if write == "nifti":
        data, meta = _nifti_layer(tmp_path)
        target = nifti(tmp_path / "old.nii.gz")
        assert write_labels_nifti(str(target), data, meta) == [str(target)]
        assert nib.load(target).shape == (8, 9, 7)
    else:
        data, meta = _geo_layer(tmp_path)
        target = scene(tmp_path / "old.tif", 20)
        assert write_labels_geotiff(str(target), data, meta) == [str(target)]
