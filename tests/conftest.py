"""Fixtures shared by every test area."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segnet_domains import SegNet, save_checkpoint
from tests.data.synthetic import TINY, train_tiny
from tests.shared import once_per_run, share_cores_between_workers

#: Fixtures that train a model or hand one out: a test using any of them depends on the arithmetic.
TRAINED_FIXTURES = frozenset({"trained_checkpoint", "lesion_checkpoint", "atlas_run"})


def pytest_configure(config: pytest.Config) -> None:
    share_cores_between_workers()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a trained model ``numerics``; GPU tests skip cleanly without CUDA.

    ``make test-portable`` runs the ``numerics`` tests again under capped oneDNN
    instruction sets and with one thread; tests that train in their own body
    carry the mark explicitly.
    """
    cuda = torch.cuda.is_available()
    for item in items:
        if TRAINED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.numerics)
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA device"))


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 1-channel SegNet trained to segment bright disks (session-wide, ~10 s)."""
    return once_per_run(tmp_path_factory, "trained", lambda d: train_tiny(d / "blobs.pt"))


@pytest.fixture
def tiny_checkpoint(tmp_path: Path):
    """Factory ``tiny_checkpoint(in_channels, out_channels, **metadata)`` → an untrained tiny model."""

    def make(in_channels: int = 1, out_channels: int = 2, name: str = "tiny.pt", **metadata) -> Path:
        torch.manual_seed(0)
        model = SegNet(in_channels, out_channels, features=TINY, dropout=metadata.pop("dropout", 0.0))
        return save_checkpoint(tmp_path / name, model, **metadata)

    return make
