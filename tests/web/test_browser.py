"""The page in a real headless Chromium (Selenium): upload an image and a NIfTI volume, slide, download.

Skips only where Chromium, chromedriver or Selenium is missing (CI installs
the Debian packages ``chromium`` and ``chromium-driver``). The page's
screenshot goes to ``tmp_path``; with ``SEGNET_UPDATE_SCREENSHOT=1`` also to
``docs/images/serve.png`` (the README's picture).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest

from segnet_domains.inference import Segmenter
from segnet_domains.medical.nifti import read_volume
from segnet_domains.predict_files import predict_image_file, predict_volume_file
from segnet_domains.synthetic.scenes import blob_scene
from tests.web.live import LiveServer, constant_checkpoint

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "headless Chromium needs the Debian packages chromium and chromium-driver (not installed here)",
        allow_module_level=True,
    )

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
AFFINE = np.array([[1.5, 0, 0, -48.0], [0, 1.5, 0, -54.0], [0, 0, 2.0, -40.0], [0, 0, 0, 1]])


@pytest.fixture
def browser(tmp_path: Path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--window-size=1280,1000"]  # fmt: skip
    flags.append(f"--user-data-dir={tmp_path / 'profile'}")
    for flag in flags:
        opts.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def _sphere_volume(shape: tuple[int, int, int] = (64, 72, 40), seed: int = 0) -> np.ndarray:
    """Noise with a few bright spheres (what the blob model was trained to find, slice by slice)."""
    rng = np.random.default_rng(seed)
    grid = np.mgrid[: shape[0], : shape[1], : shape[2]]
    vol = rng.normal(100, 10, shape)
    for c, r in (((20, 30, 20), 9), ((44, 48, 18), 7), ((30, 52, 26), 5)):
        vol[sum((g - ci) ** 2 for g, ci in zip(grid, c)) < r**2] += 60
    return vol.astype(np.float32)


def _wait_done(driver, timeout: float = 120) -> None:
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error")
    )
    state = driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")
    assert state == "done", driver.find_element(By.ID, "error").text


def _view(driver) -> dict:
    return driver.execute_script("return Object.assign({}, window.segnetView)")


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    img, _ = blob_scene(np.random.default_rng(3), 96, 128)
    png = tmp_path / "disks.png"
    iio.imwrite(png, np.clip(img[0], 0, 255).astype(np.uint8))
    vol = tmp_path / "spheres.nii.gz"
    nib.save(nib.Nifti1Image(_sphere_volume(), AFFINE), vol)
    return png, vol


def _image_and_volume(
    browser, model: str, seg: Segmenter, png: Path, vol: Path, tmp_path: Path
) -> np.ndarray:
    """Upload the image, then the volume, with ``model``; check overlay and slider against the CLI's masks.

    Returns:
        The CLI's mask of the volume (``predict_volume_file``, the function the server calls).
    """
    Select(browser.find_element(By.ID, "model")).select_by_value(model)
    browser.find_element(By.ID, "file").send_keys(str(png))
    _wait_done(browser)
    ref = predict_image_file(seg, png, tmp_path / "ref.png")
    assert _view(browser)["overlayPixels"] == int((ref > 0).sum())  # the overlay is the CLI's mask
    assert f"{int((ref > 0).sum()):,}" in browser.find_element(By.ID, "legend").text
    assert browser.find_element(By.ID, "slice-controls").is_displayed() is False

    browser.find_element(By.ID, "file").send_keys(str(vol))
    _wait_done(browser)
    ref_vol = predict_volume_file(seg, vol, tmp_path / "ref.nii.gz", progress=False)
    ras = read_volume(tmp_path / "ref.nii.gz").to_ras()  # the page shows RAS (this file is RAS already)
    view = _view(browser)
    assert view["axis"] == 2 and view["overlayPixels"] == int((ras[:, :, view["slice"]] > 0).sum())
    slider = browser.find_element(By.ID, "slice")
    assert slider.get_attribute("max") == "39"
    for _ in range(4):
        slider.send_keys(Keys.ARROW_RIGHT if view["slice"] < 20 else Keys.ARROW_LEFT)
    moved = _view(browser)
    assert abs(moved["slice"] - view["slice"]) == 4
    assert moved["overlayPixels"] == int((ras[:, :, moved["slice"]] > 0).sum())
    assert browser.find_element(By.ID, "slice-label").text == f"{moved['slice']} / 39"
    return ref_vol


def test_page_segments_an_image_and_a_volume_and_downloads_the_mask(browser, tmp_path: Path) -> None:
    names = {"class_names": ["background", "lesion"], "domain": "mri"}
    lesion = constant_checkpoint(tmp_path / "lesion.pt", 1, **names)
    bayes = constant_checkpoint(tmp_path / "bayes.pt", 1, dropout=0.2, **names)
    png, vol = _inputs(tmp_path)

    with LiveServer([lesion, bayes]) as server:
        browser.get(server.url)
        WebDriverWait(browser, 30).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 3
        )
        assert len(browser.find_elements(By.CSS_SELECTOR, "#samples button")) == 3
        Select(browser.find_element(By.ID, "model")).select_by_value("lesion")
        info = browser.find_element(By.ID, "model-info").text
        assert "mri" in info and "background, lesion" in info and "dropout\nno" in info
        assert not browser.find_element(By.ID, "uncertainty").is_enabled()

        seg = Segmenter.from_checkpoint(lesion, device="cpu")
        ref_vol = _image_and_volume(browser, "lesion", seg, png, vol, tmp_path)
        assert (ref_vol == 1).all() and _view(browser)["overlayPixels"] == 64 * 72  # known by construction

        # the download is the mask on the input's grid
        browser.find_element(By.ID, "download-mask").click()
        target = browser.downloads / "spheres_labels.nii.gz"
        deadline = time.monotonic() + 30
        while not target.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        mask = nib.load(target)
        assert mask.shape == (64, 72, 40)
        np.testing.assert_allclose(mask.affine, AFFINE)
        np.testing.assert_array_equal(np.asarray(mask.dataobj), ref_vol)

        # a bad file: the CLI's one line, in the page
        bad = tmp_path / "broken.nii.gz"
        bad.write_bytes(vol.read_bytes()[:300])
        browser.find_element(By.ID, "file").send_keys(str(bad))
        WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "error").is_displayed())
        assert browser.find_element(By.ID, "error").text.startswith("broken.nii.gz: ")

        # a dropout model offers the uncertainty view
        Select(browser.find_element(By.ID, "model")).select_by_value("bayes")
        browser.find_element(By.ID, "uncertainty").click()
        browser.find_element(By.ID, "file").send_keys(str(png))
        _wait_done(browser)
        assert _view(browser)["overlayPixels"] == 96 * 128  # every pixel is "lesion"
        browser.find_element(By.ID, "show-uncertainty").click()
        assert _view(browser)["overlayPixels"] == 96 * 128  # the variance map, drawn everywhere
        assert (
            browser.find_element(By.ID, "download-uncertainty").get_attribute("download")
            == "disks_uncertainty.tif"
        )


@pytest.mark.slow
def test_screenshot_with_a_trained_model(browser, trained_checkpoint: Path, tmp_path: Path) -> None:
    """The README's picture: the session's tiny blob model (trained for other tests) on the same files.

    Only the page's agreement with the CLI is checked, not the model's quality.
    """
    blobs = tmp_path / "blobs.pt"
    shutil.copy(trained_checkpoint, blobs)
    png, vol = _inputs(tmp_path)
    with LiveServer([blobs]) as server:
        browser.get(server.url)
        WebDriverWait(browser, 30).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) == 2
        )
        _image_and_volume(
            browser, "blobs", Segmenter.from_checkpoint(blobs, device="cpu"), png, vol, tmp_path
        )
        browser.execute_script("window.scrollTo(0, 0)")  # the slider's focus scrolled the page
        shot = tmp_path / "serve.png"
        browser.save_screenshot(str(shot))
        assert iio.imread(shot).shape[1] == 1280  # the whole window
        if os.environ.get("SEGNET_UPDATE_SCREENSHOT") == "1":
            shutil.copy(shot, REPO / "docs" / "images" / "serve.png")
