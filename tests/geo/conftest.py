"""Fixtures for the raster tests: a tiny aerial checkpoint, a segmenter on it, GDAL settings for one test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rasterio._env import del_gdal_config

from segnet_domains import Segmenter
from tests.data.geo import make_checkpoint


@pytest.fixture(scope="session")
def aerial_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained tiny 3-band (blue, green, red) → 4-class SegNet with dropout."""
    return make_checkpoint(tmp_path_factory.mktemp("aerial") / "aerial.pt")


@pytest.fixture(scope="session")
def aerial_segmenter(aerial_checkpoint: Path) -> Segmenter:
    return Segmenter.from_checkpoint(aerial_checkpoint, device="cpu", batch_size=4)


@pytest.fixture
def gdal_setenv(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Set GDAL options as environment variables for one test, and leave none of them behind.

    ``monkeypatch`` restores the variables, but a ``rasterio.Env`` entered
    meanwhile writes the values it found back as GDAL configuration, which
    outlives them (and changed later tests in the same worker).
    """
    names: list[str] = []

    def setenv(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        names.append(name)

    yield setenv
    for name in names:
        del_gdal_config(name)
