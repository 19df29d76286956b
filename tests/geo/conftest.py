"""Fixtures for the raster tests: a tiny aerial checkpoint and a segmenter on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from segnet_domains import Segmenter
from tests.data.geo import make_checkpoint


@pytest.fixture(scope="session")
def aerial_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained tiny 3-band (blue, green, red) → 4-class SegNet with dropout."""
    return make_checkpoint(tmp_path_factory.mktemp("aerial") / "aerial.pt")


@pytest.fixture(scope="session")
def aerial_segmenter(aerial_checkpoint: Path) -> Segmenter:
    return Segmenter.from_checkpoint(aerial_checkpoint, device="cpu", batch_size=4)
