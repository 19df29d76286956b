"""Fixtures and data generators for the napari plugin tests.

* The whole folder is skipped cleanly when napari is not installed; tests that
  need Qt (``make_napari_viewer``, ``qtbot``) are skipped when there is no
  display or napari/Qt/OpenGL cannot start (run them under ``xvfb-run -a``).
  Headless tests (readers, writers, ``segment_layer`` on a ``ViewerModel``) run
  everywhere.
* Real files are written in ``tmp_path`` by the generators below: a NIfTI
  volume stored in a non-RAS orientation, GeoTIFF scenes with a CRS, and a
  tiny SegNet trained for a few seconds on the synthetic MRI sample.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from segnet_domains.synthetic.aerial import rgb_scene
from segnet_domains.synthetic.brain import flair_head
from tests.napari_plugin.data import FEATURES, one_thread, train_lesion_model, write_geotiff, write_nifti
from tests.shared import once_per_run

HERE = Path(__file__).parent

if importlib.util.find_spec("napari") is None or importlib.util.find_spec("npe2") is None:
    collect_ignore_glob = ["test_*.py"]

_PROBE = """
from qtpy.QtWidgets import QApplication
app = QApplication([])
from vispy.scene import SceneCanvas
canvas = SceneCanvas(show=False, size=(32, 32))
canvas.render()
print("ok")
"""
_QT_FIXTURES = {"make_napari_viewer", "make_napari_viewer_proxy", "qtbot", "qapp"}


@functools.cache
def gui_problem() -> str | None:
    """Why napari's Qt viewer cannot start here, or ``None`` if it can."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (run under xvfb-run -a)"
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "Qt/OpenGL probe timed out"
    if probe.returncode != 0 or "ok" not in probe.stdout:
        lines = (probe.stderr or probe.stdout).strip().splitlines()
        return f"napari/Qt/OpenGL cannot start: {lines[-1] if lines else probe.returncode}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this folder's Qt tests cleanly when there is no usable display."""
    mine = [it for it in items if HERE in Path(str(it.path)).parents]
    needs_qt = [it for it in mine if _QT_FIXTURES & set(getattr(it, "fixturenames", ()))]
    if not needs_qt:
        return
    problem = gui_problem()
    if problem:
        for it in needs_qt:
            it.add_marker(pytest.mark.skip(reason=problem))


@pytest.fixture(autouse=True)
def _config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the widget's remembered settings and scene outputs out of the user's dirs."""
    path = tmp_path / "config"
    monkeypatch.setenv("SEGNET_DOMAINS_CONFIG_DIR", str(path))
    monkeypatch.setenv("SEGNET_DOMAINS_OUTPUT_DIR", str(tmp_path / "scene-outputs"))
    return path


@pytest.fixture(autouse=True)
def _torch_one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def lesion_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny lesion model (dropout 0.1) trained for a few seconds on the synthetic MRI sample."""
    return once_per_run(tmp_path_factory, "lesion", lambda d: train_lesion_model(d / "lesion.pt"))


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """Factory for untrained tiny checkpoints: ``make(in_channels=1, classes=2, **metadata)``."""
    from segnet_domains import SegNet, save_checkpoint

    root = tmp_path_factory.mktemp("untrained")

    def make(in_channels: int = 1, classes: int = 2, name: str = "tiny.pt", **metadata) -> Path:
        torch.manual_seed(0)
        model = SegNet(in_channels, classes, features=FEATURES, dropout=metadata.pop("dropout", 0.0))
        return save_checkpoint(root / name, model, **metadata)

    return make


@pytest.fixture(scope="session")
def mri(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """``(path, ras_volume, ras_mask)``: a small MRI-like volume stored as P-L-S NIfTI."""
    vol, mask = flair_head((40, 48, 36), lesions=4, seed=7)
    path = write_nifti(tmp_path_factory.mktemp("mri") / "flair.nii.gz", vol)
    return path, vol, mask


@pytest.fixture(scope="session")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """``(path, rgb H×W×3)``: an aerial-like RGB GeoTIFF in UTM 33N."""
    rgb, _ = rgb_scene(96, seed=3)
    path = write_geotiff(tmp_path_factory.mktemp("scene") / "scene.tif", np.moveaxis(rgb, -1, 0))
    return path, rgb
