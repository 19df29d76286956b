"""Where a scene's pixels come from: a local file, a remote raster, or a STAC item's assets.

:func:`resolve_source` turns what a user typed into a :class:`Source`: the
dataset name GDAL opens, the name outputs are called by, and what identifies
the input for resume. Everything is read through GDAL's virtual file systems,
so remote scenes are read window by window (HTTP range requests) exactly as
local files are:

- ``https://host/a.tif`` → ``/vsicurl/https://host/a.tif``;
  ``s3://bucket/key.tif`` → ``/vsis3/bucket/key.tif`` (also ``gs://`` →
  ``/vsigs/``, ``az://`` → ``/vsiaz/``); a ``/vsi…/`` path is used as given.
- A STAC item (``*.json`` file or URL, or a STAC API ``…/items/<id>`` URL) is
  parsed with pystac; the named ``assets`` (an asset key, or a band's
  ``common_name``/``name`` in the asset's ``eo:bands``/``bands``) are stacked
  band after band into a GDAL VRT (XML, no file written) whose bands are
  named after them. A multi-band asset contributes all its bands. Assets must
  share the CRS and footprint; an asset of a coarser resolution (Sentinel-2's
  20 m bands beside its 10 m ones) is resampled bilinearly onto the finest
  asset's grid by the VRT, window by window; any other difference is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import rasterio
from rasterio.errors import RasterioError, RasterioIOError

from segnet_domains.errors import InputError

#: GDAL options for remote datasets: no directory listing on open (a COG needs none, and listing an
#: HTTP "folder" costs a request per open), a bounded connect time, a couple of retries on 5xx/429.
REMOTE_GDAL_OPTIONS: dict[str, Any] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_CONNECTTIMEOUT": 15,
    "GDAL_HTTP_MAX_RETRY": 2,
    "GDAL_HTTP_RETRY_DELAY": 0.5,
}

#: URL schemes GDAL reads through a virtual file system.
VSI_PREFIXES = {
    "http": "/vsicurl/",
    "https": "/vsicurl/",
    "s3": "/vsis3/",
    "gs": "/vsigs/",
    "az": "/vsiaz/",
}

RASTER_SUFFIXES = (".tiff", ".tif", ".vrt", ".jp2", ".img", ".png")


@dataclass(frozen=True)
class Source:
    """A scene's input, resolved.

    Attributes:
        name: what the user gave (path, URL, ``/vsi`` path or STAC item).
        dataset: what ``rasterio.open`` gets: a path, a ``/vsi…`` path or VRT XML.
        stem: the outputs' base name.
        label: a short name for progress bars and tags (file name, URL's last segment, item id).
        identity: what resume keys on (a local file's size and mtime; a URL itself).
        remote: read over the network (use :data:`REMOTE_GDAL_OPTIONS`).
        local: the local file, when there is one.
    """

    name: str
    dataset: str
    stem: str
    label: str
    identity: tuple[Any, ...]
    remote: bool
    local: Path | None = None

    @contextlib.contextmanager
    def open(self) -> Iterator[rasterio.DatasetReader]:
        """The dataset, opened for windowed reads (remote ones with :data:`REMOTE_GDAL_OPTIONS`)."""
        with rasterio.Env(**(REMOTE_GDAL_OPTIONS if self.remote else {})), rasterio.open(self.dataset) as ds:
            yield ds


def is_remote(text: str) -> bool:
    """``True`` for URLs GDAL reads through a virtual file system and for ``/vsi…`` paths."""
    return text.startswith("/vsi") or urlsplit(text).scheme.lower() in VSI_PREFIXES


def gdal_path(text: str) -> str:
    """GDAL's name of a URL (``https://…`` → ``/vsicurl/https://…``, ``s3://b/k`` → ``/vsis3/b/k``)."""
    scheme = urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        return VSI_PREFIXES[scheme] + text
    if scheme in VSI_PREFIXES:
        return VSI_PREFIXES[scheme] + text.split("://", 1)[1]
    return text


def is_stac_item(text: str) -> bool:
    """A ``.json`` file or URL, or a STAC API item URL (``…/collections/<c>/items/<id>``)."""
    path = (urlsplit(text).path if "://" in text else text).lower()
    if path.endswith(RASTER_SUFFIXES):
        return False
    return path.endswith(".json") or ("://" in text and "/items/" in path)


def raster_stem(name: str) -> str:
    """Output base name of a raster path or URL: its last path segment without query or raster suffix."""
    last = (urlsplit(name).path if "://" in name else name).rstrip("/").rsplit("/", 1)[-1]
    for suffix in RASTER_SUFFIXES:
        if last.lower().endswith(suffix):
            return last[: -len(suffix)] or "scene"
    return Path(last).stem or "scene"


def safe_stem(text: str) -> str:
    """A file-name-safe version of ``text`` (a STAC item id can hold ``/`` or ``:``)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "scene"


def resolve_source(text: str | Path, assets: Sequence[str] | None = None) -> Source:
    """Resolve what a user gave into a :class:`Source` (no pixels read).

    Args:
        text: a local raster, a URL (``http(s)://``, ``s3://``, ``gs://``,
            ``az://``), a ``/vsi…`` path, or a STAC item (file or URL).
        assets: the STAC item's assets to stack, in band order (required for
            an item; refused for a plain raster, which takes ``--bands``).

    Raises:
        InputError: a missing file, an unreachable item, a missing asset, assets
            that do not share one grid, ``assets`` given for a plain raster.
    """
    name = str(text)
    if is_stac_item(name):
        return _stac_source(name, assets)
    if assets:
        raise InputError(name, "--assets is for STAC items; choose a raster's bands with --bands")
    if is_remote(name):
        label = (urlsplit(name).path if "://" in name else name).rstrip("/").rsplit("/", 1)[-1]
        return Source(name, gdal_path(name), raster_stem(name), label, (gdal_path(name),), remote=True)
    path = Path(name).expanduser()
    st = path.stat() if path.is_file() else None
    identity = (str(path.resolve()), st.st_size, st.st_mtime_ns) if st else (str(path),)
    return Source(str(path), str(path), raster_stem(path.name), path.name, identity, remote=False, local=path)


def http_problem(url: str) -> str | None:
    """Why an HTTP(S) URL cannot be fetched (``"HTTP 404 Not Found"``, ``"cannot connect (…)"``), or ``None``.

    GDAL reports a missing and an unreachable remote file alike ("does not
    exist in the file system"); one HEAD request tells the user which.
    """
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        return None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15):
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"cannot connect ({getattr(reason, 'strerror', None) or reason})"


# ---------------------------------------------------------------------------------------------- STAC


def _read_item(name: str) -> Any:
    """The pystac Item at ``name`` (a local file or an http(s) URL).

    The JSON is fetched here rather than by ``pystac.Item.from_file``, whose
    reader turns an HTTP status into a bare ``Exception``.
    """
    import pystac

    try:
        if "://" in name:
            with urllib.request.urlopen(name, timeout=30) as resp:
                text = resp.read().decode("utf-8")
        else:
            text = Path(name).read_text(encoding="utf-8")
        data = json.loads(text)
    except FileNotFoundError:
        raise InputError(name, "file not found") from None
    except urllib.error.HTTPError as exc:
        raise InputError(name, f"cannot fetch the STAC item (HTTP {exc.code} {exc.reason})") from None
    except urllib.error.URLError as exc:
        raise InputError(name, f"cannot fetch the STAC item ({exc.reason})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(name, f"not JSON ({exc})") from None
    except OSError as exc:
        raise InputError(name, f"cannot read the STAC item ({exc.strerror or exc})") from None
    if not isinstance(data, dict) or data.get("type") != "Feature":
        raise InputError(name, "not a STAC item (a JSON object of type 'Feature')")
    try:
        return pystac.Item.from_dict(data, href=name)
    except (pystac.STACError, KeyError, TypeError, ValueError) as exc:
        raise InputError(name, f"not a STAC item ({type(exc).__name__}: {exc})") from None


def _asset_bands(asset: Any) -> list[dict[str, Any]]:
    """The asset's band list: ``eo:bands`` (STAC 1.0) or ``bands`` (STAC 1.1), possibly empty."""
    return list(asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or [])


def _find_asset(item: Any, want: str) -> str:
    """The key of the asset called ``want``: by key, else by a band's ``common_name`` or ``name``."""
    if want in item.assets:
        return want
    hits = [
        key
        for key, asset in item.assets.items()
        if any(want in (b.get("common_name"), b.get("name")) for b in _asset_bands(asset))
    ]
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(item.assets) or "none"
    if hits:
        raise InputError(item.self_href, f"asset name {want!r} is ambiguous ({', '.join(hits)})")
    raise InputError(item.self_href, f"STAC item {item.id!r} has no asset {want!r} (it has: {known})")


@dataclass(frozen=True)
class _Grid:
    href: str
    crs: Any
    transform: Any
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    nodata: float | None
    blocks: tuple[int, int]


def _open_asset(item_name: str, key: str, href: str) -> _Grid:
    path = gdal_path(href)
    try:
        with Source(href, path, "", "", (), remote=is_remote(href)).open() as src:
            return _Grid(
                path,
                src.crs,
                src.transform,
                src.width,
                src.height,
                src.count,
                tuple(src.dtypes),
                src.nodata,
                tuple(src.block_shapes[0]),
            )
    except (RasterioIOError, RasterioError) as exc:
        why = http_problem(href) or str(exc).strip().splitlines()[0].replace(path, "").strip(" :'")
        raise InputError(item_name, f"asset {key!r} ({href}) cannot be read: {why}") from None


def _check_grids(item_name: str, keys: Sequence[str], grids: Sequence[_Grid]) -> _Grid:
    """The finest grid, after checking every asset covers the same footprint in the same CRS.

    Raises:
        InputError: a CRS that differs, a rotated grid, or a different footprint.
    """
    ref = min(grids, key=lambda g: abs(g.transform.a))
    for key, g in zip(keys, grids):
        if g.crs != ref.crs:
            raise InputError(item_name, f"asset {key!r} is in {g.crs}, the others in {ref.crs}")
        if g.transform.b or g.transform.d:
            raise InputError(item_name, f"asset {key!r} has a rotated geotransform; not supported")
        tol = abs(ref.transform.a) / 2
        b, rb = _bounds(g), _bounds(ref)
        if any(abs(x - y) > tol for x, y in zip(b, rb)):
            raise InputError(
                item_name,
                f"asset {key!r} covers {_fmt(b)}, asset {keys[grids.index(ref)]!r} {_fmt(rb)}: "
                "assets must share one footprint",
            )
    return ref


def _bounds(g: _Grid) -> tuple[float, float, float, float]:
    t = g.transform
    xs, ys = (t.c, t.c + t.a * g.width), (t.f, t.f + t.e * g.height)
    return min(xs), min(ys), max(xs), max(ys)


def _fmt(b: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"


def _band_names(key: str, asset: Any, count: int) -> list[str]:
    names = [b.get("common_name") or b.get("name") for b in _asset_bands(asset)]
    if count == 1:
        return [key]
    if len(names) == count and all(names):
        return [str(n) for n in names]
    return [f"{key}_{i}" for i in range(1, count + 1)]


def stack_vrt(ref: _Grid, layers: Sequence[tuple[_Grid, int, str]]) -> str:
    """GDAL VRT XML stacking ``(asset grid, 1-based band, description)`` layers on the grid ``ref``.

    Sources on another resolution are resampled bilinearly by GDAL (the
    ``DstRect`` spans the whole target grid). Written by hand rather than
    with ``gdalbuildvrt`` because rasterio ships no Python binding of it; the
    format is GDAL's documented VRT schema.
    """
    gt = ", ".join(repr(float(v)) for v in ref.transform.to_gdal())
    bands = []
    for i, (g, band, desc) in enumerate(layers, start=1):
        nodata = "" if g.nodata is None else f"<NoDataValue>{g.nodata!r}</NoDataValue>"
        resample = "" if (g.width, g.height) == (ref.width, ref.height) else ' resampling="bilinear"'
        dtype = _gdal_type(g.dtypes[band - 1])
        bands.append(
            f'<VRTRasterBand dataType="{dtype}" band="{i}">'
            f"<Description>{escape(desc)}</Description>{nodata}"
            f"<ComplexSource{resample}>"
            f'<SourceFilename relativeToVRT="0">{escape(g.href)}</SourceFilename>'
            f"<SourceBand>{band}</SourceBand>"
            f'<SourceProperties RasterXSize="{g.width}" RasterYSize="{g.height}" '
            f'DataType="{dtype}" BlockXSize="{g.blocks[1]}" BlockYSize="{g.blocks[0]}"/>'
            f'<SrcRect xOff="0" yOff="0" xSize="{g.width}" ySize="{g.height}"/>'
            f'<DstRect xOff="0" yOff="0" xSize="{ref.width}" ySize="{ref.height}"/>'
            f"{'' if g.nodata is None else f'<NODATA>{g.nodata!r}</NODATA>'}"
            "</ComplexSource></VRTRasterBand>"
        )
    crs = f"<SRS>{escape(ref.crs.to_wkt())}</SRS>" if ref.crs else ""
    return (
        f'<VRTDataset rasterXSize="{ref.width}" rasterYSize="{ref.height}">{crs}'
        f"<GeoTransform>{gt}</GeoTransform>{''.join(bands)}</VRTDataset>"
    )


_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


def _gdal_type(dtype: str) -> str:
    return _GDAL_TYPES.get(dtype, dtype)


def _stac_source(name: str, assets: Sequence[str] | None) -> Source:
    item = _read_item(name)
    if not assets:
        raise InputError(
            name, f"STAC item {item.id!r}: choose its assets with --assets (it has: {', '.join(item.assets)})"
        )
    keys = [_find_asset(item, a) for a in assets]
    hrefs = [item.assets[k].get_absolute_href() or item.assets[k].href for k in keys]
    grids = [_open_asset(name, k, h) for k, h in zip(keys, hrefs)]
    ref = _check_grids(name, keys, grids)
    layers = []
    for want, key, g in zip(assets, keys, grids):
        names = _band_names(want, item.assets[key], g.count)
        layers.extend((g, b, names[b - 1]) for b in range(1, g.count + 1))
    vrt = stack_vrt(ref, layers)
    remote = any(is_remote(h) for h in hrefs)
    identity = ("stac", name, hashlib.sha256(vrt.encode()).hexdigest()[:20], *_local_stats(hrefs))
    stem = safe_stem(item.id)
    return Source(name, vrt, stem, stem, identity, remote=remote)


def _local_stats(hrefs: Sequence[str]) -> list[Any]:
    out: list[Any] = []
    for h in hrefs:
        p = Path(h)
        if not is_remote(h) and p.is_file():
            st = p.stat()
            out += [st.st_size, st.st_mtime_ns]
    return out
