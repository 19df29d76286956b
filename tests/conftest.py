"""Fixtures shared by every test area."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segnet_domains import SegNet, save_checkpoint
from tests.data.synthetic import TINY, train_tiny


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests skip cleanly when there is no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 1-channel SegNet trained to segment bright disks (session-wide, ~10 s)."""
    return train_tiny(tmp_path_factory.mktemp("trained") / "blobs.pt")


@pytest.fixture
def tiny_checkpoint(tmp_path: Path):
    """Factory ``tiny_checkpoint(in_channels, out_channels, **metadata)`` → an untrained tiny model."""

    def make(in_channels: int = 1, out_channels: int = 2, name: str = "tiny.pt", **metadata) -> Path:
        torch.manual_seed(0)
        model = SegNet(in_channels, out_channels, features=TINY, dropout=metadata.pop("dropout", 0.0))
        return save_checkpoint(tmp_path / name, model, **metadata)

    return make
