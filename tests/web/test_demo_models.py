"""``segnet-domains serve`` with the models ``make demo`` trained, in headless Chromium: all three domains.

Opt-in, because the models take ``make demo`` (minutes) to train:
``make demo``, then
``SEGNET_DEMO_DIR=demo_out xvfb-run -a .venv/bin/python -m pytest tests/web/test_demo_models.py``.
The server is the real console command in its own process (what ``make serve`` starts). For each domain the
page segments the demo's held-out input, and the downloaded mask must equal what the CLI's own functions
write for that file, on the input's grid: the NIfTI affine, the GeoTIFF CRS and transform, the PNG's size.
With ``SEGNET_UPDATE_SCREENSHOT=1`` the page showing the MRI result becomes ``docs/images/serve.png``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import rasterio

from segnet_domains.geo.tiler import tile_scene
from segnet_domains.inference import Segmenter
from segnet_domains.predict_files import predict_image_file, predict_volume_file

DEMO = os.environ.get("SEGNET_DEMO_DIR")
DOMAINS = ("mri", "fundus", "aerial")
if not DEMO or not all((Path(DEMO) / "models" / d / "best.pt").is_file() for d in DOMAINS):
    pytest.skip("set SEGNET_DEMO_DIR to a folder `make demo` filled (opt-in: needs the demo's models)",
                allow_module_level=True)  # fmt: skip

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.web import test_browser  # noqa: E402

browser = test_browser.browser  # the same headless Chromium fixture
ROOT = Path(DEMO).resolve()


def _held_out(domain: str) -> Path:
    """The demo's held-out input for ``domain`` (never seen in training)."""
    pattern = {
        "mri": "atlas_heldout/**/*_T1w.nii.gz",
        "fundus": "rite_heldout/**/images/*",
        "aerial": "aerial_heldout/**/*.tif",
    }
    found = sorted(p for p in (ROOT / "data").glob(pattern[domain]) if "label" not in p.name)
    assert found, f"no held-out {domain} input under {ROOT / 'data'}"
    return found[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served() -> str:
    port = _free_port()
    command = Path(sys.executable).with_name("segnet-domains")  # the console script `make serve` runs
    cmd = [str(command), "serve", "--demo-dir", str(ROOT), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            urllib.request.urlopen(url + "api/models", timeout=2).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "the server did not answer within 120 s"
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _segment(browser, url: str, domain: str, path: Path):
    browser.get(url)
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 4)
    Select(browser.find_element(By.ID, "model")).select_by_value(domain)
    browser.find_element(By.ID, "file").send_keys(str(path))
    test_browser._wait_done(browser, timeout=600)
    browser.find_element(By.ID, "download-mask").click()
    name = browser.find_element(By.ID, "download-mask").get_attribute("download")
    target = browser.downloads / name
    deadline = time.monotonic() + 60
    while not target.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.is_file(), f"{name} was not downloaded"
    return target


def test_mri_volume_mask_keeps_the_affine(browser, served: str, tmp_path: Path) -> None:
    src = _held_out("mri")
    got = _segment(browser, served, "mri", src)
    seg = Segmenter.from_checkpoint(ROOT / "models" / "mri" / "best.pt")
    ref = predict_volume_file(seg, src, tmp_path / "ref.nii.gz", progress=False)
    mask, img = nib.load(got), nib.load(src)
    assert mask.shape == img.shape
    np.testing.assert_allclose(mask.affine, img.affine)
    np.testing.assert_array_equal(np.asarray(mask.dataobj), ref)
    assert ref.any(), "the demo's MRI model found no lesion in the held-out volume"
    if os.environ.get("SEGNET_UPDATE_SCREENSHOT") == "1":
        browser.set_window_size(1280, 1500)  # the whole page, controls and legend, in one picture
        browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
        browser.save_screenshot(str(test_browser.REPO / "docs" / "images" / "serve.png"))


def test_fundus_image_mask_has_the_image_size(browser, served: str, tmp_path: Path) -> None:
    src = _held_out("fundus")
    got = _segment(browser, served, "fundus", src)
    seg = Segmenter.from_checkpoint(ROOT / "models" / "fundus" / "best.pt")
    ref = predict_image_file(seg, src, tmp_path / "ref.png")
    mask = iio.imread(got)
    assert mask.shape == iio.imread(src).shape[:2]
    np.testing.assert_array_equal(mask, ref)
    assert 0.02 < (ref > 0).mean() < 0.4, "vessels should cover a few percent of a fundus photograph"


def test_aerial_scene_mask_keeps_crs_and_transform(browser, served: str, tmp_path: Path) -> None:
    src = _held_out("aerial")
    got = _segment(browser, served, "aerial", src)
    seg = Segmenter.from_checkpoint(ROOT / "models" / "aerial" / "best.pt")
    ref_path = Path(tile_scene(seg, src, tmp_path, progress=False).outputs[0])
    with rasterio.open(got) as mask, rasterio.open(src) as scene, rasterio.open(ref_path) as ref:
        assert mask.crs == scene.crs and mask.transform == scene.transform
        assert (mask.height, mask.width) == (scene.height, scene.width)
        np.testing.assert_array_equal(mask.read(1), ref.read(1))
        assert len(np.unique(ref.read(1))) > 1
