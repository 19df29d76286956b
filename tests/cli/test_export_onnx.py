"""``export-onnx``, ``--backend onnxruntime`` on the model commands, and ``export-bundle --onnx``."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import rasterio

from segnet_domains.cli import main
from segnet_domains.synthetic.scenes import blob_scene
from tests.data.geo import make_checkpoint, make_scene

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cli_onnx(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli_onnx") / "blobs.onnx"
    assert main(["export-onnx", str(trained_checkpoint), str(out), "--opset", "17"]) == 0
    return out


def test_export_onnx_writes_a_checked_model(cli_onnx: Path, capsys) -> None:
    proto = onnx.load(str(cli_onnx))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == 17
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["segnet_domains"])["info"]["class_names"] == ["background", "blob"]
    code, out, _ = _run(["info", str(cli_onnx)], capsys)  # info reads the export like a checkpoint
    assert code == 0 and json.loads(out)["domain"] == "mri"


def test_predict_image_with_onnxruntime_gives_the_torch_labels(
    trained_checkpoint: Path, cli_onnx: Path, tmp_path: Path, capsys
) -> None:
    img, _ = blob_scene(np.random.default_rng(11), 83, 101)
    src = tmp_path / "img.png"
    iio.imwrite(src, np.clip(img[0], 0, 255).astype(np.uint8))
    runs = {
        "torch": ["-m", str(trained_checkpoint), "--precision", "fp32"],
        "onnx-file": ["-m", str(cli_onnx)],
        "onnx-flag": ["-m", str(trained_checkpoint), "--backend", "onnxruntime"],
    }
    labels = {}
    for name, model in runs.items():
        out = tmp_path / f"{name}.png"
        code, _, err = _run(["predict-image", str(src), *model, "--out", str(out), "--device", "cpu"], capsys)
        assert code == 0, err
        labels[name] = iio.imread(out)
    assert labels["torch"].shape == (83, 101) and labels["torch"].dtype == np.uint8
    assert 0.05 < (labels["torch"] == 1).mean() < 0.9  # the trained model finds the blobs
    for name in ("onnx-file", "onnx-flag"):
        assert (labels[name] == labels["torch"]).mean() >= 0.999, name


def test_predict_volume_with_onnxruntime(
    trained_checkpoint: Path, cli_onnx: Path, tmp_path: Path, capsys
) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(100, 10, (21, 25, 7)).astype(np.float32)
    data[5:12, 6:14, :] += 60
    src = tmp_path / "t1w.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.2, 2.0, 1.0])), src)
    masks = {}
    for name, model in {"torch": trained_checkpoint, "onnx": cli_onnx}.items():
        out = tmp_path / f"{name}.nii.gz"
        argv = ["predict-volume", str(src), "-m", str(model), "--out", str(out), "--device", "cpu"]
        code, _, err = _run(
            [*argv, "--batch-size", "3", "--precision", "fp32" if name == "torch" else "auto"], capsys
        )
        assert code == 0, err
        masks[name] = nib.load(out)
    assert np.array_equal(masks["onnx"].affine, masks["torch"].affine)
    a, b = np.asarray(masks["onnx"].dataobj), np.asarray(masks["torch"].dataobj)
    assert a.shape == data.shape and (a == b).mean() >= 0.999
    assert a[5:12, 6:14, :].mean() > 0.8


def test_tile_with_onnxruntime(tmp_path: Path, capsys) -> None:
    ckpt = make_checkpoint(tmp_path / "aerial.pt", dropout=0.2)
    exported = tmp_path / "aerial.onnx"
    assert main(["export-onnx", str(ckpt), str(exported)]) == 0
    scene, _ = make_scene(tmp_path / "scene.tif", 150, 170, seed=3)
    results = {}
    for name, model in {"torch": [str(ckpt), "--precision", "fp32"], "onnx": [str(exported)]}.items():
        out = tmp_path / name
        argv = [
            "tile",
            str(scene),
            "--model",
            *model,
            "--out-dir",
            str(out),
            "--tile",
            "128",
            "--overlap",
            "32",
        ]
        code, _, err = _run([*argv, "--device", "cpu", "--no-progress", "--proba"], capsys)
        assert code == 0, err
        with rasterio.open(out / "scene_labels.tif") as dst, rasterio.open(out / "scene_proba.tif") as pr:
            results[name] = (dst.read(1), pr.read().astype(int), dst.crs, dst.transform)
    (lt, pt, crs_t, tr_t), (lo, po, crs_o, tr_o) = results["torch"], results["onnx"]
    assert crs_o == crs_t and tr_o == tr_t
    assert (lo == lt).mean() >= 0.999
    assert np.abs(po - pt).max() <= 1  # uint8 probabilities: at most one rounding step apart
    # Monte Carlo dropout cannot run in the exported graph: refused before any work, in one line
    code, _, err = _run(["tile", str(scene), "--model", str(exported), "--out-dir", str(tmp_path / "u"),
                         "--uncertainty", "--device", "cpu", "--no-progress"], capsys)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and "needs --backend torch" in err
    assert not (tmp_path / "u").exists()


def test_export_onnx_bad_input(cli_onnx: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04junk")
    code, _, err = _run(["export-onnx", str(bad), str(tmp_path / "m.onnx")], capsys)
    assert code == 2 and "pickle" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()
    iio.imwrite(tmp_path / "x.png", np.zeros((40, 40), np.uint8))
    code, _, err = _run(["predict-image", str(tmp_path / "x.png"), "-m", str(cli_onnx), "--out",
                         str(tmp_path / "o.png"), "--backend", "torch"], capsys)  # fmt: skip
    assert code == 2 and "onnxruntime backend, not torch" in err and not (tmp_path / "o.png").exists()


@pytest.mark.timeout(300)
def test_bundle_with_onnx_runs_in_monai(trained_checkpoint: Path, tmp_path: Path, capsys) -> None:
    from monai.bundle import run as bundle_run

    from segnet_domains import Segmenter

    bundle = tmp_path / "bundle"
    code, _, err = _run(
        ["export-bundle", str(trained_checkpoint), str(bundle), "--device", "cpu", "--onnx"], capsys
    )
    assert code == 0, err
    model = bundle / "models" / "model.onnx"
    onnx.checker.check_model(onnx.load(str(model)))
    assert "models/model.onnx" in (bundle / "docs" / "README.md").read_text()

    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    vol = np.stack([blob_scene(rng, 40, 36)[0][0] for _ in range(6)], axis=-1)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), inputs / "case.nii.gz")
    bundle_run(  # MONAI's own runner, in process, with the checkpoint overridden to the ONNX model
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
        checkpoint=str(model),
        input_dir=str(inputs),
        output_dir=str(outputs),
    )
    mask = np.asarray(nib.load(outputs / "case_seg.nii.gz").dataobj)
    expected = Segmenter.from_checkpoint(trained_checkpoint, device="cpu", precision="fp32").predict_volume(
        vol
    )
    assert mask.shape == vol.shape and (mask == expected).mean() >= 0.999
    assert (mask == 1).mean() > 0.05
