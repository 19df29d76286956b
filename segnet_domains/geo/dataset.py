"""Aerial/satellite training data: image + label raster pairs, checked, normalised like the tiler.

A layout is declared by its folders and suffixes (:class:`AerialLayout`), as
SkyScapes-Dense and TLCGIS ship them::

    ROOT/images/<name>.tif   (or .png)   any band count and dtype, GeoTIFF or PNG tile
    ROOT/labels/<name>.tif   (or .png)   uint8/uint16 class indices, matched by name

A label raster must have its image's size and, for GeoTIFFs, its CRS and
geotransform; otherwise :func:`load_sample` raises an
:class:`~segnet_domains.errors.InputError` naming the label file. Label
``nodata`` (default 255) and image nodata become the ignore index.

:class:`SceneNormalized` normalises a whole scene with the tiler's own
:class:`~segnet_domains.geo.normalize.SceneNormalizer` (statistics over valid
pixels, nodata set to 0 afterwards), so the network sees at training time
exactly what ``segnet-domains tile`` will feed it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from rasterio.errors import RasterioError

from segnet_domains.errors import InputError
from segnet_domains.geo.normalize import SceneNormalizer
from segnet_domains.geo.scene import read_validity
from segnet_domains.io.images import read_image

#: Label value for unlabelled pixels (SkyScapes/TLCGIS "void"; nodata in label rasters).
IGNORE_INDEX = 255

RASTER_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class AerialLayout:
    """Where the pairs are: ``ROOT/<images>/<name><suffix>`` with ``ROOT/<labels>/<name><suffix>``."""

    images: str = "images"
    labels: str = "labels"
    suffixes: tuple[str, ...] = (".tif", ".tiff", ".png")


@dataclass(frozen=True)
class AerialPair:
    """An image file and its label file."""

    name: str
    image: Path
    label: Path | None


def find_pairs(
    root: str | Path, layout: AerialLayout | None = None, require_labels: bool = True
) -> list[AerialPair]:
    """Index the pairs of a folder, matched by file name without suffix.

    Raises:
        InputError: the images folder is missing or empty, or (with
            ``require_labels``) an image has no label file.
    """
    layout = layout or AerialLayout()
    folder = Path(root) / layout.images
    if not folder.is_dir():
        raise InputError(
            folder, f"images folder not found (expected ROOT/{layout.images}/*.tif and ROOT/{layout.labels}/)"
        )
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in layout.suffixes)
    if not images:
        raise InputError(folder, f"no images ({', '.join(layout.suffixes)}) found")
    labels = {
        p.stem: p
        for p in sorted((Path(root) / layout.labels).glob("*"))
        if p.suffix.lower() in layout.suffixes
    }
    pairs = []
    for img in images:
        lab = labels.get(img.stem)
        if lab is None and require_labels:
            raise InputError(img, f"no label file {layout.labels}/{img.stem}.* for this image")
        pairs.append(AerialPair(img.stem, img, lab))
    return pairs


@dataclass
class AerialSample:
    """A loaded pair.

    Attributes:
        name: file stem.
        image: ``C×H×W`` raw pixels (file dtype).
        label: ``H×W`` int64 classes, :data:`IGNORE_INDEX` where unlabelled or nodata (or ``None``).
        valid: ``H×W`` bool, image pixels with data.
        band_names: band descriptions of the image, where it has them.
        source: the image file.
    """

    name: str
    image: np.ndarray
    label: np.ndarray | None
    valid: np.ndarray
    band_names: list[str] | None
    source: Path


def _read_raster(path: Path, bands: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    try:
        with rasterio.open(path) as src:
            idx = list(bands) if bands else list(range(1, src.count + 1))
            if max(idx) > src.count:
                raise InputError(path, f"band {max(idx)} does not exist; the raster has {src.count} band(s)")
            data = src.read(idx)
            valid = read_validity(src, idx, data)
            geo = {
                "crs": src.crs,
                "transform": src.transform,
                "nodata": src.nodata,
                "descriptions": [src.descriptions[i - 1] for i in idx],
            }
    except RasterioError as exc:
        raise InputError(path, f"unreadable raster ({str(exc).strip().splitlines()[0]})") from None
    return data, valid, geo


def _read_any(
    path: Path, bands: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    if path.suffix.lower() in RASTER_SUFFIXES:
        return _read_raster(path, bands)
    arr = read_image(path)
    chw = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    if bands:
        if max(bands) > chw.shape[0]:
            raise InputError(
                path, f"band {max(bands)} does not exist; the image has {chw.shape[0]} channel(s)"
            )
        chw = chw[[b - 1 for b in bands]]
    return chw, np.ones(chw.shape[1:], bool), None


def load_sample(
    pair: AerialPair, bands: Sequence[int] | None = None, ignore_index: int = IGNORE_INDEX
) -> AerialSample:
    """Read a pair and check that the label raster fits its image.

    Raises:
        InputError: unreadable file; a label raster whose size, CRS or
            geotransform differs from its image's (the label file is named);
            a multi-band label raster.
    """
    image, valid, geo = _read_any(pair.image, bands)
    if image.dtype.kind == "f":
        valid &= np.isfinite(image).all(axis=0)
    label = None
    if pair.label is not None:
        lab, lab_valid, lgeo = _read_any(pair.label, None)
        if lab.shape[0] != 1:
            raise InputError(
                pair.label, f"label raster has {lab.shape[0]} bands; expected 1 band of class indices"
            )
        if lab.shape[1:] != image.shape[1:]:
            raise InputError(
                pair.label,
                f"label raster is {lab.shape[1]}×{lab.shape[2]} pixels but its image {pair.image.name} "
                f"is {image.shape[1]}×{image.shape[2]}",
            )
        if geo is not None and lgeo is not None:
            if (geo["crs"] or None) != (lgeo["crs"] or None):
                raise InputError(
                    pair.label, f"label CRS {_crs(lgeo['crs'])} differs from its image's {_crs(geo['crs'])}"
                )
            if not lgeo["transform"].almost_equals(geo["transform"], precision=1e-6):
                raise InputError(
                    pair.label,
                    f"label geotransform {tuple(lgeo['transform'])[:6]} differs from its image's "
                    f"{tuple(geo['transform'])[:6]}",
                )
        if lab.dtype.kind == "f" and not np.array_equal(lab, np.round(lab)):
            raise InputError(pair.label, "label raster has non-integer values (expected class indices)")
        label = lab[0].astype(np.int64)
        label[~lab_valid | ~valid] = ignore_index
    names = geo["descriptions"] if geo is not None and all(geo["descriptions"]) else None
    return AerialSample(pair.name, image, label, valid, names, pair.image)


def _crs(crs: Any) -> str:
    if not crs:
        return "none"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()[:60]


class SceneNormalized(MapTransform):
    """Normalise an image key with the tiler's scene-wide statistics; zero its nodata pixels.

    Args:
        keys: image keys (``C×H×W``).
        spec: the checkpoint's normalisation.
        valid_key: ``1×H×W`` validity key (statistics over valid pixels only).
    """

    def __init__(self, keys: KeysCollection, spec: Mapping[str, Any], valid_key: str = "mask") -> None:
        super().__init__(keys)
        self.spec, self.valid_key = dict(spec), valid_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        valid = np.asarray(d[self.valid_key])[0] > 0
        for key in self.key_iterator(d):
            raw = np.asarray(d[key])
            x = SceneNormalizer(self.spec, raw, valid)(raw)
            x[:, ~valid] = 0.0
            d[key] = torch.from_numpy(np.ascontiguousarray(x))
        return d


def class_frequencies(labels: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Pixel frequency of each class over ``labels`` (ignored pixels left out)."""
    counts = np.zeros(num_classes, np.float64)
    for lab in labels:
        v = lab[(lab >= 0) & (lab < num_classes)]
        counts += np.bincount(v.ravel(), minlength=num_classes)[:num_classes]
    return counts / max(counts.sum(), 1.0)


def rare_class_ratios(freq: np.ndarray, power: float = 1.0) -> list[float]:
    """Window-centre sampling ratios ``∝ freq^-power`` (0 for absent classes): rare classes come more."""
    ratios = np.where(freq > 0, np.power(np.maximum(freq, 1e-12), -float(power)), 0.0)
    return (ratios / max(ratios.sum(), 1e-12)).tolist()
