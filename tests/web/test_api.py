"""The HTTP API against the real server: masks with their geometry, the CLI's errors, limits, concurrency."""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import rasterio
import tifffile

from segnet_domains.cli import main
from segnet_domains.medical.nifti import read_volume
from segnet_domains.synthetic import aerial
from segnet_domains.synthetic.layouts import landsat_pairs
from segnet_domains.web.app import STATIC
from tests.web.live import LiveServer, constant_checkpoint

LIMIT_MB = 4
#: An LPS volume with anisotropic voxels and an offset origin: the mask must come back on this grid.
LPS_AFFINE = np.array([[-1.2, 0, 0, 90.0], [0, -1.0, 0, 120.0], [0, 0, 2.5, -70.0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's temporary folder for this module: every file it writes must land (and vanish) here."""
    root = tmp_path_factory.mktemp("server_tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(root))
        yield root


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {
        "ones": constant_checkpoint(d / "ones.pt", 1, class_names=["background", "lesion"], domain="mri"),
        "twos": constant_checkpoint(
            d / "twos.pt", 2, classes=3, in_channels=3, domain="fundus",
            class_names=["background", "artery", "vein"], class_colors=[[0, 0, 0], [255, 0, 0], [0, 0, 255]],
        ),
        "aerial": constant_checkpoint(
            d / "aerial.pt", 3, classes=4, in_channels=4, dropout=0.3, domain="aerial",
            class_names=aerial.CLASS_NAMES, class_colors=aerial.CLASS_COLORS, band_names=aerial.BAND_NAMES,
        ),
    }  # fmt: skip


@pytest.fixture(scope="module")
def server(models: dict[str, Path], tmp_root: Path):
    with LiveServer(list(models.values()), max_upload=LIMIT_MB * 2**20, mc_samples=3) as live:
        yield live


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray = LPS_AFFINE) -> Path:
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=4)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)
    return path


def _brainish(shape: tuple[int, int, int] = (24, 20, 12), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(100, 10, shape) + 50 * (rng.random(shape) > 0.9)).astype(np.float32)


def _decode(a: dict) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(a["data"])), np.uint8).reshape(a["shape"])


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ")
    return err.removeprefix("error: ")


# --------------------------------------------------------------------------- models


def test_models_lists_what_the_checkpoints_say(server: LiveServer) -> None:
    listed = {m["name"]: m for m in server.get_json("/api/models")}
    assert list(listed) == ["ones", "twos", "aerial"]
    a = listed["aerial"]
    assert (a["domain"], a["bands"], a["band_names"], a["dropout"]) == ("aerial", 4, aerial.BAND_NAMES, True)
    assert [c["name"] for c in a["classes"]] == aerial.CLASS_NAMES
    assert [c["color"] for c in a["classes"]] == aerial.CLASS_COLORS
    assert listed["twos"]["classes"][2] == {"index": 2, "name": "vein", "color": [0, 0, 255]}
    assert listed["ones"]["dropout"] is False


# --------------------------------------------------------------------------- masks and geometry


def test_nifti_mask_has_the_inputs_affine_and_header_and_the_clis_labels(
    server: LiveServer, tmp_path: Path
) -> None:
    src = _nifti(tmp_path / "sub-01_T1w.nii.gz", _brainish())
    status, headers, body = server.post("/api/predict", src.read_bytes(), src.name, model="ones", axis="1")
    assert status == 200, body
    assert headers["content-disposition"] == 'attachment; filename="sub-01_T1w_labels.nii.gz"'
    assert headers["x-segnet-model"] == "ones"
    (tmp_path / "web.nii.gz").write_bytes(body)
    mask = nib.load(tmp_path / "web.nii.gz")
    assert mask.shape == (24, 20, 12)
    np.testing.assert_allclose(mask.affine, LPS_AFFINE)
    assert int(mask.header["qform_code"]) == 1 and int(mask.header["sform_code"]) == 4
    assert mask.get_data_dtype() == np.uint8
    assert main(["predict-volume", str(src), "--model", str(server.registry.models["ones"].path),
                 "--out", str(tmp_path / "cli.nii.gz"), "--axis", "1", "--device", "cpu"]) == 0  # fmt: skip
    np.testing.assert_array_equal(
        np.asarray(mask.dataobj), np.asarray(nib.load(tmp_path / "cli.nii.gz").dataobj)
    )
    assert (np.asarray(mask.dataobj) == 1).all()


def test_png_image_gives_a_png_mask(server: LiveServer, tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    status, headers, body = server.post(
        "/api/predict", iio.imwrite("<bytes>", rgb, extension=".png"), "eye.png"
    )
    assert status == 200, body
    assert headers["content-type"] == "image/png"
    assert headers["x-segnet-model"] == "twos" and headers["x-segnet-kind"] == "image"  # picked by domain
    mask = iio.imread(body)
    assert mask.shape == (37, 53) and mask.dtype == np.uint8 and (mask == 2).all()


def test_geotiff_scene_gives_a_cog_with_crs_transform_and_nodata(server: LiveServer, tmp_path: Path) -> None:
    img, _ = landsat_pairs(tmp_path, scenes=1, size=(96, 136), seed=5)[0]
    status, headers, body = server.post("/api/predict", img.read_bytes(), img.name)
    assert status == 200, body
    assert headers["x-segnet-kind"] == "scene" and headers["x-segnet-model"] == "aerial"
    (tmp_path / "out.tif").write_bytes(body)
    with rasterio.open(img) as src, rasterio.open(tmp_path / "out.tif") as out:
        assert (out.width, out.height, out.crs, out.transform) == (
            src.width,
            src.height,
            src.crs,
            src.transform,
        )
        labels, valid = out.read(1), src.dataset_mask() > 0
        assert out.colormap(1)[3][:3] == tuple(aerial.CLASS_COLORS[3])
    assert (labels[valid] == 3).all() and (labels[~valid] == 255).all() and (~valid).any()


def test_uncertainty_comes_as_a_zip_beside_the_mask(server: LiveServer, tmp_path: Path) -> None:
    img, _ = landsat_pairs(tmp_path, scenes=1, size=(64, 64), seed=6)[0]
    status, headers, body = server.post("/api/predict", img.read_bytes(), "s.tif", uncertainty="true")
    assert status == 200, body
    assert headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.namelist() == ["s_labels.tif", "s_uncertainty.tif"]
        zf.extractall(tmp_path / "z")
    with rasterio.open(tmp_path / "z" / "s_uncertainty.tif") as u, rasterio.open(img) as src:
        assert (u.crs, u.transform, u.dtypes[0]) == (src.crs, src.transform, "float32")
        var = u.read(1)
    # the classifier ignores its input, so dropout cannot move the softmax: zero variance, exactly known
    assert np.nanmax(var) < 1e-6


# --------------------------------------------------------------------------- the page's preview


def test_preview_streams_progress_then_arrays_in_ras(server: LiveServer, tmp_path: Path) -> None:
    vol = _brainish((40, 16, 10), seed=3)
    src = _nifti(tmp_path / "v.nii", vol)
    status, headers, body = server.post("/api/preview", src.read_bytes(), src.name, model="ones", axis="0")
    assert status == 200, body
    assert headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(ln) for ln in body.decode().splitlines()]
    progress = [ln["progress"] for ln in lines[:-1]]
    assert progress[0] == [0, 40] and progress[-1] == [40, 40]  # slices along RAS axis 0
    r = lines[-1]["result"]
    assert (r["kind"], r["axis"], r["shape"], r["counts"]) == (
        "volume",
        0,
        [40, 16, 10],
        {"background": 0, "lesion": 6400},
    )
    ras = read_volume(src).to_ras()
    assert _decode(r["image"]).shape == ras.shape == _decode(r["labels"]).shape
    assert r["spacing"] == [1.2, 1.0, 2.5]  # RAS order
    assert r["geometry"]["axcodes"] == "LPS"
    assert r["files"][0]["name"] == "v_labels.nii.gz"
    (tmp_path / "m.nii.gz").write_bytes(base64.b64decode(r["files"][0]["data"]))
    np.testing.assert_allclose(nib.load(tmp_path / "m.nii.gz").affine, LPS_AFFINE)


def test_preview_of_an_image_with_uncertainty_refused_without_dropout(server: LiveServer) -> None:
    png = iio.imwrite("<bytes>", np.zeros((20, 20, 3), np.uint8), extension=".png")
    status, _, body = server.post("/api/preview", png, "x.png", model="twos", uncertainty="true")
    assert status == 400
    assert json.loads(body) == {
        "error": "twos: uncertainty needs a checkpoint trained with dropout (Bayesian SegNet)"
    }
    status, headers, body = server.post("/api/preview", png, "x.png", model="twos")
    assert status == 200 and headers["content-type"] == "application/json"  # no progress: one JSON answer
    r = json.loads(body)["result"]
    assert _decode(r["image"]).shape == (20, 20, 3) and (_decode(r["labels"]) == 2).all()


# --------------------------------------------------------------------------- errors and limits


def test_bad_files_give_the_clis_line_as_http_400(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ones = str(server.registry.models["ones"].path)
    good = _nifti(tmp_path / "good.nii.gz", _brainish()).read_bytes()
    Path("cut.nii.gz").write_bytes(good[: len(good) // 2])
    _nifti(tmp_path / "four.nii.gz", np.zeros((8, 8, 8, 3)))
    iio.imwrite("rgb.png", np.zeros((16, 16, 3), np.uint8))
    cases = {
        "cut.nii.gz": ["predict-volume", "cut.nii.gz", "--out", "o.nii.gz"],
        "four.nii.gz": ["predict-volume", "four.nii.gz", "--out", "o.nii.gz"],
        "rgb.png": ["predict-image", "rgb.png", "--out", "o.png"],
    }
    for name, argv in cases.items():
        status, _, body = server.post("/api/predict", Path(name).read_bytes(), name, model="ones")
        assert status == 400, name
        assert json.loads(body)["error"] == _cli_error([*argv, "--model", ones], capsys)
    assert not list(tmp_path.glob("o.*"))
    status, _, body = server.post("/api/predict", b"hello", "notes.txt")
    assert status == 400
    assert json.loads(body)["error"] == (
        "notes.txt: unsupported file type .txt: expected PNG/JPEG/TIFF, NIfTI (.nii, .nii.gz) or GeoTIFF"
    )
    status, _, body = server.post("/api/predict", good, "g.nii.gz", model="nope")
    assert (status, json.loads(body)["error"]) == (400, "no model named 'nope'; served: ones, twos, aerial")
    status, _, body = server.post("/api/predict", good, "g.nii.gz", axis="5")
    assert (status, json.loads(body)["error"]) == (400, "axis must be 0, 1 or 2 (got 5)")
    status, _, body = server.post("/api/predict", good, "g.nii.gz", axis="x")
    assert status == 400 and json.loads(body)["error"].startswith("axis: ")


def test_upload_limit_and_content_length(server: LiveServer) -> None:
    status, _, body = server.post("/api/predict", bytes(LIMIT_MB * 2**20 + 1), "big.nii")
    assert (status, json.loads(body)) == (413, {"error": f"upload too large (limit {LIMIT_MB} MB)"})
    assert server.post_chunked("/api/predict", [b"--x\r\n", b"--x--\r\n"]) == 411
    status, _, body = server.get("/api/samples/none")
    assert status == 404


def test_nothing_is_left_in_the_temporary_folder(server: LiveServer, tmp_root: Path, tmp_path: Path) -> None:
    src = _nifti(tmp_path / "a.nii.gz", _brainish())
    before = sorted(os.listdir(tmp_root))
    for path in ("/api/predict", "/api/preview"):
        assert server.post(path, src.read_bytes(), src.name, model="ones")[0] == 200
        assert server.post(path, b"junk", "bad.nii.gz", model="ones")[0] == 400
    assert sorted(os.listdir(tmp_root)) == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.nii.gz"]


# --------------------------------------------------------------------------- concurrency


def test_sixteen_parallel_requests_all_get_their_own_mask(server: LiveServer) -> None:
    rng = np.random.default_rng(7)
    jobs = []
    for i in range(16):
        h, w = 24 + 3 * i, 40 - i
        if i % 2:
            data, name, model, want = (
                iio.imwrite("<bytes>", rng.integers(0, 255, (h, w, 3), np.uint8), extension=".png"),
                f"i{i}.png",
                "twos",
                2,
            )
        else:
            data, name, model, want = (
                iio.imwrite("<bytes>", rng.integers(0, 255, (h, w), np.uint8), extension=".png"),
                f"i{i}.png",
                "ones",
                1,
            )
        jobs.append((data, name, model, want, (h, w)))  # fmt: skip

    def call(job):
        data, name, model, _, _ = job
        return server.post("/api/predict", data, name, model=model)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, jobs))
    for (_, name, model, want, shape), (status, headers, body) in zip(jobs, answers):
        assert status == 200, body
        assert headers["x-segnet-model"] == model
        assert headers["content-disposition"] == f'attachment; filename="{name[:-4]}_labels.png"'
        mask = iio.imread(body)
        assert mask.shape == shape and (mask == want).all()


# --------------------------------------------------------------------------- the page


def test_page_and_its_files_need_nothing_from_the_internet(server: LiveServer) -> None:
    status, headers, page = server.get("/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    static = Path(STATIC)
    assert sorted(p.name for p in static.iterdir()) == ["app.js", "index.html", "style.css"]
    for f in static.iterdir():
        text = f.read_text()
        assert "http://" not in text and "https://" not in text and "url(" not in text, f.name
        assert server.get(f"/static/{f.name}")[0] == 200
    assert server.get("/docs")[0] == 404  # FastAPI's docs page loads scripts from a CDN: off


# --------------------------------------------------------------------------- samples


def test_samples_are_real_files_of_each_kind(server: LiveServer, tmp_path: Path) -> None:
    listed = {s["name"]: s["kind"] for s in server.get_json("/api/samples")}
    assert listed == {"mri": "volume", "fundus": "image", "aerial": "scene"}
    status, headers, body = server.get("/api/samples/aerial")
    assert status == 200
    name = headers["content-disposition"].split("filename=")[1].strip('"')
    (tmp_path / name).write_bytes(body)
    with rasterio.open(tmp_path / name) as ds:
        assert (ds.count, ds.crs.to_string(), ds.res) == (4, "EPSG:32633", (30.0, 30.0))
    status, headers, body = server.post("/api/preview", body, name)
    r = json.loads(body.decode().splitlines()[-1])["result"]
    assert (r["kind"], r["model"]["name"], r["shape"]) == ("scene", "aerial", [512, 512])
    assert r["geometry"]["crs"] == "EPSG:32633"
    _, headers, body = server.get("/api/samples/fundus")
    assert tifffile.imread(io.BytesIO(body)).shape == (584, 565, 3)
    status, headers, mask = server.post("/api/predict", body, "01_test.tif")  # a TIFF without geo tags
    assert (status, headers["x-segnet-kind"], headers["x-segnet-model"]) == (200, "image", "twos")
    assert iio.imread(mask).shape == (584, 565)
    _, headers, body = server.get("/api/samples/mri")
    (tmp_path / "t1w.nii.gz").write_bytes(body)
    status, headers, mask = server.post("/api/predict", body, "t1w.nii.gz")
    assert (status, headers["x-segnet-model"]) == (200, "ones")
    (tmp_path / "mask.nii.gz").write_bytes(mask)
    t1w, lesion = nib.load(tmp_path / "t1w.nii.gz"), nib.load(tmp_path / "mask.nii.gz")
    assert t1w.shape == lesion.shape == (99, 117, 95)  # the MNI152 box at 2 mm, as the demo trains on
    np.testing.assert_allclose(lesion.affine, t1w.affine)
