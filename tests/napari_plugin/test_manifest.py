"""The npe2 manifest: valid, shipped in the package, registered under the entry point, widget in the menu."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import npe2

import napari_plugin


def test_manifest_validates_and_is_registered() -> None:
    path = Path(napari_plugin.__file__).parent / "napari.yaml"
    manifest = npe2.PluginManifest.from_file(path)
    assert manifest.name == "segnet-domains"
    eps = {ep.name: ep.value for ep in entry_points(group="napari.manifest")}
    assert eps["segnet-domains"] == "napari_plugin:napari.yaml"
    contrib = manifest.contributions
    assert [w.display_name for w in contrib.widgets] == ["SegNet segmentation"]
    assert {tuple(r.filename_patterns) for r in contrib.readers} == {
        ("*.nii", "*.nii.gz"),
        ("*",),  # DICOM: series folders and files without a suffix
        ("*.tif", "*.tiff"),
    }
    assert {w.layer_types[0] for w in contrib.writers} == {"labels"}
    assert {s.key for s in contrib.sample_data} == {"mri", "aerial"}
    # every command resolves to a real callable
    for cmd in contrib.commands:
        module, _, attr = cmd.python_name.partition(":")
        assert callable(getattr(__import__(module, fromlist=[attr]), attr)), cmd.python_name


def test_npe2_validate_cli() -> None:
    npe2_exe = Path(sys.executable).with_name("npe2")
    cmd = [str(npe2_exe)] if npe2_exe.exists() else [sys.executable, "-m", "npe2"]
    out = subprocess.run([*cmd, "validate", "segnet-domains"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in (out.stdout + out.stderr).lower()


def test_sample_data_contributions() -> None:
    from napari_plugin._sample_data import aerial_sample, mri_sample
    from segnet_domains.synthetic.brain import flair_head

    ((vol, kw, kind),) = mri_sample()
    assert kind == "image" and vol.ndim == 3 and kw["scale"] == (1.0, 1.0, 1.2)
    _, mask = flair_head()
    assert 0.001 < mask.mean() < 0.05  # lesions present, a small fraction of the head
    assert vol[mask == 1].mean() > 1.5 * vol[(mask == 0) & (vol > 100)].mean()  # bright FLAIR lesions
    ((rgb, kw, kind),) = aerial_sample()
    assert rgb.shape[-1] == 3 and rgb.dtype.name == "uint8" and kw["rgb"]


def test_widget_in_plugins_menu(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    from napari._app_model import get_app_model

    from napari_plugin._widget import SegNetWidget

    menus = dict(get_app_model().menus)
    plugin_items = [getattr(getattr(i, "command", None), "id", None) for i in menus["napari/plugins"]]
    assert "segnet-domains.segnet_widget" in plugin_items
    samples = [i.command.id for i in menus["napari/file/samples/segnet-domains"]]
    assert samples == ["segnet-domains.mri", "segnet-domains.aerial"]
    dock, widget = viewer.window.add_plugin_dock_widget("segnet-domains", "SegNet segmentation")
    assert isinstance(widget, SegNetWidget)
    viewer.open_sample("segnet-domains", "mri")
    assert viewer.layers[-1].name == "mri sample"
