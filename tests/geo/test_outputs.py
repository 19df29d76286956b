"""The tiler's COG outputs: overviews built before the COG copy equal those GDAL's COG driver makes itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin

from segnet_domains.geo import outputs
from segnet_domains.geo.outputs import (
    COG_OPTIONS,
    LABEL_NODATA,
    PROBA_NODATA,
    OutputPaths,
    RowStore,
    cog_overview_factors,
)

CRS = "EPSG:32633"
TRANSFORM = from_origin(399960.0, 5100000.0, 10.0, 10.0)


@pytest.mark.parametrize("size", [(300, 200), (512, 512), (513, 10), (700, 600), (1100, 2050), (1025, 1025)])
def test_overview_factors_are_the_cog_drivers(tmp_path: Path, size: tuple[int, int]) -> None:
    width, height = size
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, height, width), np.uint8))
    with rasterio.open(plain) as src:
        rasterio.shutil.copy(src, tmp_path / "cog.tif", driver="COG", blocksize=512)
    with rasterio.open(tmp_path / "cog.tif") as cog:
        assert cog_overview_factors(width, height, 512) == cog.overviews(1)


def _outputs(height: int, width: int, classes: int) -> dict[str, np.ndarray]:
    """Row outputs with structure at every scale and a nodata corner, as the tiler writes them."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:height, :width]
    labels = ((yy // 37 + xx // 23 + rng.integers(0, 2, (height, width))) % classes).astype(np.uint8)
    proba = rng.integers(0, 255, (classes, height, width)).astype(np.uint8)  # 0…254, 255 = nodata
    unc = rng.random((height, width), np.float32)
    nodata = (yy < height // 3) & (xx < width // 4)
    labels[nodata], proba[:, nodata], unc[nodata] = LABEL_NODATA, PROBA_NODATA, np.nan
    return {"labels": labels, "proba": proba, "uncertainty": unc}


def _gdal_cog(tmp_path: Path, name: str, data: np.ndarray, nodata: float, resampling: str) -> Path:
    """What GDAL's COG driver makes of ``data`` when it computes the overviews itself."""
    data = data if data.ndim == 3 else data[None]
    plain, out = tmp_path / f"{name}_plain.tif", tmp_path / f"{name}_gdal.tif"
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0])
    with rasterio.open(plain, "w", dtype=data.dtype, nodata=nodata, **profile) as dst:
        dst.write(data)
    with rasterio.open(plain) as src:
        rasterio.shutil.copy(src, out, driver="COG", overview_resampling=resampling, **COG_OPTIONS)
    return out


def _finalize(tmp_path: Path, values: dict[str, np.ndarray]) -> OutputPaths:
    """``values`` through a RowStore (written in row bands) to the final COGs."""
    classes, height, width = values["proba"].shape
    store = RowStore(tmp_path / ".work", height, width, classes, proba=True, uncertainty=True)
    store.open(fresh=True)
    (store.workdir / "labels.vrt.ovr").write_bytes(b"stale")  # an interrupted earlier finalize's
    for start in range(0, height, 400):
        rows = slice(start, start + 400)
        store.write_rows(start, {k: v[..., rows, :] for k, v in values.items()})
    paths = OutputPaths.for_scene(tmp_path, "scene", proba=True, uncertainty=True)
    store.finalize(paths, CRS, TRANSFORM.to_gdal(), ["a", "b", "c"], [[1, 2, 3]] * 3, {"RUN": "1"})
    store.discard()
    return paths


def _level(path: Path, level: int) -> tuple[np.ndarray, rasterio.enums.Compression]:
    """Overview ``level``'s pixels and compression."""
    with rasterio.open(path, overview_level=level) as src:
        return src.read(), src.compression


def test_finalize_overviews_equal_the_cog_drivers(tmp_path: Path) -> None:
    """Labels (nearest), probabilities and variance (averages that leave nodata out): every level equal."""
    values = _outputs(1100, 1300, classes=3)
    paths = _finalize(tmp_path, values)
    refs = {
        "labels": _gdal_cog(tmp_path, "labels", values["labels"], LABEL_NODATA, "nearest"),
        "proba": _gdal_cog(tmp_path, "proba", values["proba"], PROBA_NODATA, "average"),
        "uncertainty": _gdal_cog(tmp_path, "uncertainty", values["uncertainty"], np.nan, "average"),
    }
    for name, ref in refs.items():
        ours = getattr(paths, name)
        with rasterio.open(ours) as a, rasterio.open(ref) as b:
            assert a.overviews(1) == b.overviews(1) == [2, 4]
            assert a.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            np.testing.assert_array_equal(a.read(), values[name] if name == "proba" else values[name][None])
        for level in range(2):
            (ours_level, ours_codec), (ref_level, ref_codec) = _level(ours, level), _level(ref, level)
            assert ours_codec == ref_codec == rasterio.enums.Compression.deflate
            np.testing.assert_array_equal(ours_level.astype(np.float64), ref_level)  # NaN: both nodata
            assert np.isfinite(ours_level.astype(np.float64)).mean() > 0.8  # nodata left out, not spread


def test_finalize_overviews_of_odd_sides(tmp_path: Path) -> None:
    """As many levels as the COG driver makes; each level's side rounded up (``gdaladdo``'s convention)."""
    height, width = 1031, 1301
    values = _outputs(height, width, classes=3)
    paths = _finalize(tmp_path, values)
    with rasterio.open(paths.labels) as src:
        assert src.overviews(1) == cog_overview_factors(width, height, 512) == [2, 4]
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and src.crs == CRS
        np.testing.assert_array_equal(src.read(1), values["labels"])
    for level, factor in enumerate([2, 4]):
        with rasterio.open(paths.labels, overview_level=level) as src:
            assert src.shape == (-(-height // factor), -(-width // factor))
            assert set(np.unique(src.read(1))) <= {0, 1, 2, LABEL_NODATA}


@pytest.mark.parametrize("sidecar", ["listed", "hidden"])
def test_finalize_keeps_overviews_when_listing_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gdal_setenv: Callable[[str, str], None], sidecar: str
) -> None:
    """A user's cloud setting (no folder listing) must not drop the overviews; nor must an unseen sidecar."""
    gdal_setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
    if sidecar == "hidden":  # GDAL does not see the .ovr after all: the COG driver builds the overviews
        monkeypatch.setattr(outputs, "_SIDECAR_ENV", {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"})
    copy, how = rasterio.shutil.copy, []

    def recording_copy(*args, **kwargs):  # the real copy; which overviews it was told to use
        how.append(kwargs.get("overviews", "computed"))
        return copy(*args, **kwargs)

    monkeypatch.setattr(rasterio.shutil, "copy", recording_copy)
    values = _outputs(1100, 1300, classes=3)
    paths = _finalize(tmp_path, values)
    assert how == ["force_use_existing" if sidecar == "listed" else "computed"] * 3
    monkeypatch.setattr(rasterio.shutil, "copy", copy)
    ref = _gdal_cog(tmp_path, "proba", values["proba"], PROBA_NODATA, "average")
    for name in ("labels", "proba"):
        with rasterio.open(getattr(paths, name)) as src:
            assert src.overviews(1) == [2, 4]
    np.testing.assert_array_equal(_level(paths.proba, 1)[0], _level(ref, 1)[0])
