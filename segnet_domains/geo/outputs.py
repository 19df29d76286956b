"""Resumable output rasters: raw row files while tiling, Cloud-Optimized GeoTIFFs at the end.

While a scene is tiled, finished rows go to flat binary files in a work
folder (``DIR/.<stem>.tiling/``) with plain positioned writes — memory does
not grow with the scene, and rows already on disk survive a kill. A small
``progress.json`` (written after the rows it counts) lets a rerun continue.
When every row is there, each output is described by a GDAL VRT
(``VRTRawRasterBand``: CRS, geotransform, nodata, colour table, class names)
and copied by GDAL's COG driver — tiled, DEFLATE-compressed, with overviews —
to a temporary name, then renamed into place.

Outputs (``<stem>`` is the scene's file name without suffix):

* ``<stem>_labels.tif`` — uint8 class indices, 255 = nodata, colour table.
* ``<stem>_proba.tif`` — one uint8 band per class, probability × 254
  (band scale 1/254), 255 = nodata.
* ``<stem>_uncertainty.tif`` — float32 Monte Carlo dropout variance (mean
  over classes, Bayesian SegNet), NaN = nodata.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil

from segnet_domains.io.atomic import atomic_output

LABEL_NODATA = 255
PROBA_NODATA = 255
PROBA_SCALE = 254

#: GDAL creation options of the COG outputs. DEFLATE level 3, not GDAL's default 6: about 4× faster
#: to write for files a few per cent bigger (label maps compress well at any level).
COG_OPTIONS: dict[str, Any] = {
    "compress": "deflate",
    "level": 3,
    "blocksize": 512,
    "bigtiff": "if_safer",
    "num_threads": "all_cpus",
}


@dataclass(frozen=True)
class OutputPaths:
    """Final files of one scene (``None`` for outputs not requested)."""

    labels: Path
    proba: Path | None = None
    uncertainty: Path | None = None

    @classmethod
    def for_scene(cls, out_dir: Path, stem: str, proba: bool, uncertainty: bool) -> OutputPaths:
        return cls(
            labels=out_dir / f"{stem}_labels.tif",
            proba=out_dir / f"{stem}_proba.tif" if proba else None,
            uncertainty=out_dir / f"{stem}_uncertainty.tif" if uncertainty else None,
        )

    def all(self) -> list[Path]:
        return [p for p in (self.labels, self.proba, self.uncertainty) if p is not None]


@dataclass(frozen=True)
class _Layer:
    name: str
    dtype: str  # GDAL type name
    np_dtype: str
    bands: int


class RowStore:
    """Flat row files of a scene's outputs in a work folder, written in any order, resumable.

    Args:
        workdir: folder for the raw files and ``progress.json``.
        height: scene rows.
        width: scene columns.
        classes: number of classes (bands of the probability output).
        proba: keep probabilities.
        uncertainty: keep Monte Carlo variance.
    """

    def __init__(
        self,
        workdir: Path,
        height: int,
        width: int,
        classes: int,
        proba: bool,
        uncertainty: bool,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.settings = dict(settings or {})
        self.height, self.width = height, width
        self.layers = [_Layer("labels", "Byte", "uint8", 1)]
        if proba:
            self.layers.append(_Layer("proba", "Byte", "uint8", classes))
        if uncertainty:
            self.layers.append(_Layer("uncertainty", "Float32", "float32", 1))
        self._fds: dict[str, int] = {}

    # ---------------------------------------------------------------- progress

    @property
    def progress_path(self) -> Path:
        return self.workdir / "progress.json"

    def read_progress(self) -> dict[str, Any] | None:
        """The saved progress as it is (any job), or ``None`` when there is none."""
        try:
            saved = json.loads(self.progress_path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return saved if isinstance(saved, dict) else None

    def load_progress(self, key: str) -> dict[str, Any] | None:
        """The saved progress if it belongs to the same job (``key``) and its files are intact."""
        try:
            saved = json.loads(self.progress_path.read_text())
        except (OSError, ValueError):
            return None
        if saved.get("key") != key:
            return None
        for layer in self.layers:
            p = self._raw(layer)
            if not p.is_file() or p.stat().st_size != self._size(layer):
                return None
        return saved

    def save_progress(self, key: str, **fields: Any) -> None:
        """Record progress (after the rows it counts are written)."""
        tmp = self.progress_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "settings": self.settings, **fields}))
        os.replace(tmp, self.progress_path)

    # ---------------------------------------------------------------- rows

    def _raw(self, layer: _Layer) -> Path:
        return self.workdir / f"{layer.name}.raw"

    def _size(self, layer: _Layer) -> int:
        return self.height * self.width * layer.bands * np.dtype(layer.np_dtype).itemsize

    def open(self, fresh: bool) -> None:
        """Create (``fresh``) or reopen the raw files."""
        if fresh:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for layer in self.layers:
            p = self._raw(layer)
            fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
            if fresh or os.fstat(fd).st_size != self._size(layer):
                os.ftruncate(fd, self._size(layer))
            self._fds[layer.name] = fd

    def write_rows(self, start: int, values: Mapping[str, np.ndarray]) -> None:
        """Write rows ``[start, start + n)``.

        Args:
            start: first row.
            values: ``labels`` ``n×W``, ``proba`` ``K×n×W``, ``uncertainty`` ``n×W``.
        """
        for layer in self.layers:
            arr = values[layer.name]
            if layer.bands > 1:  # band-interleaved by line: row r holds K lines of W
                arr = np.moveaxis(arr, 0, 1)
            data = np.ascontiguousarray(arr, dtype=layer.np_dtype)
            offset = start * self.width * layer.bands * data.itemsize
            view = memoryview(data).cast("B")
            while view:
                n = os.pwrite(self._fds[layer.name], view, offset)
                view, offset = view[n:], offset + n

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def discard(self) -> None:
        """Remove the work folder (after success, or after a failure: nothing partial stays)."""
        self.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ---------------------------------------------------------------- final files

    def finalize(
        self,
        paths: OutputPaths,
        crs: str | None,
        transform: Sequence[float] | None,
        class_names: Sequence[str],
        class_colors: Sequence[Sequence[int]],
        tags: Mapping[str, str],
    ) -> None:
        """Write every output as a COG (temporary name, then rename)."""
        self.close()
        targets = {"labels": paths.labels, "proba": paths.proba, "uncertainty": paths.uncertainty}
        for layer in self.layers:
            vrt = self.workdir / f"{layer.name}.vrt"
            vrt.write_text(self._vrt(layer, crs, transform, class_names, class_colors, tags))
            dest = targets[layer.name]
            assert dest is not None
            resampling = "nearest" if layer.name == "labels" else "average"
            with rasterio.open(vrt) as src, atomic_output(dest) as tmp:
                rasterio.shutil.copy(src, tmp, driver="COG", overview_resampling=resampling, **COG_OPTIONS)

    def _vrt(
        self,
        layer: _Layer,
        crs: str | None,
        transform: Sequence[float] | None,
        class_names: Sequence[str],
        class_colors: Sequence[Sequence[int]],
        tags: Mapping[str, str],
    ) -> str:
        itemsize = np.dtype(layer.np_dtype).itemsize
        meta = {**tags, "CLASS_NAMES": json.dumps(list(class_names)), "OUTPUT": layer.name}
        if layer.name == "labels":
            meta["CLASS_COLORS"] = json.dumps([list(map(int, c[:3])) for c in class_colors])
        lines = [f'<VRTDataset rasterXSize="{self.width}" rasterYSize="{self.height}">']
        if crs:
            lines.append(f"<SRS>{escape(crs)}</SRS>")
        if transform is not None:
            lines.append(f"<GeoTransform>{', '.join(repr(float(v)) for v in transform)}</GeoTransform>")
        lines.append(_metadata(meta))
        for b in range(layer.bands):
            lines.append(
                f'<VRTRasterBand dataType="{layer.dtype}" band="{b + 1}" subClass="VRTRawRasterBand">'
            )
            if layer.name == "labels":
                lines += [
                    "<Description>labels</Description>",
                    f"<NoDataValue>{LABEL_NODATA}</NoDataValue>",
                    "<ColorInterp>Palette</ColorInterp>",
                    _color_table(class_colors),
                ]
            elif layer.name == "proba":
                lines += [
                    f"<Description>{escape(str(class_names[b]))}</Description>",
                    f"<NoDataValue>{PROBA_NODATA}</NoDataValue>",
                    f"<Scale>{1.0 / PROBA_SCALE!r}</Scale>",
                ]
            else:
                lines += ["<Description>mc_dropout_variance</Description>", "<NoDataValue>nan</NoDataValue>"]
            line = self.width * layer.bands * itemsize
            lines += [
                f'<SourceFilename relativeToVRT="1">{layer.name}.raw</SourceFilename>',
                f"<ImageOffset>{b * self.width * itemsize}</ImageOffset>",
                f"<PixelOffset>{itemsize}</PixelOffset><LineOffset>{line}</LineOffset>",
                "<ByteOrder>LSB</ByteOrder>",
                "</VRTRasterBand>",
            ]
        lines.append("</VRTDataset>")
        return "\n".join(lines)


def _metadata(meta: Mapping[str, str]) -> str:
    items = "".join(f'<MDI key="{escape(k)}">{escape(str(v))}</MDI>' for k, v in meta.items())
    return f"<Metadata>{items}</Metadata>"


def _color_table(colors: Sequence[Sequence[int]]) -> str:
    entries = [f'<Entry c1="{c[0]}" c2="{c[1]}" c3="{c[2]}" c4="255"/>' for c in colors]
    entries += ['<Entry c1="0" c2="0" c3="0" c4="0"/>'] * (256 - len(entries))  # nodata transparent
    return "<ColorTable>" + "".join(entries) + "</ColorTable>"


def read_tag(path: Path, key: str) -> str | None:
    """A dataset tag of a finished output (``None`` if the file is missing or unreadable)."""
    try:
        with rasterio.open(path) as src:
            return src.tags().get(key)
    except (rasterio.errors.RasterioError, OSError):
        return None
