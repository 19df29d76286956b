"""Crowd counting through the CLI: train one step on a miniature UCF-QNRF, ``predict-image --count``,
``evaluate --protocol counting``; and a density model whose count is known by construction."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from segnet_domains import SegNet, read_info, save_checkpoint
from segnet_domains.cli import main
from segnet_domains.counting.annotations import read_count
from segnet_domains.synthetic.layouts import write_ucf_qnrf

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "pipelines" / "configs" / "ucf_qnrf.yaml"


def _constant_density_model(path: Path, value: float, scale: float, tile_size: int | None = None) -> Path:
    """A density SegNet whose output is ``value`` everywhere: every weight zero, the last bias ``value``.

    Zero convolutions give zero features through BN (running mean 0, var 1) and ReLU, unpooling keeps
    zeros, so the last conv outputs its bias: the density is ``value / scale`` per pixel, whatever the image.
    """
    model = SegNet(3, 1, features=(4, 8, 8, 8, 8), head="density")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.zero_()
                m.bias.zero_()
        model.decoder.classifier.bias.fill_(value)
    meta = {
        "class_names": ["density"],
        "density_scale": scale,
        "normalization": {"mode": "scale", "scale": 255},
    }
    return save_checkpoint(path, model, tile_size=tile_size, **meta)


@pytest.mark.parametrize("tile_size", [None, 32])
def test_count_is_the_sum_of_the_density(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tile_size: int | None
) -> None:
    ckpt = _constant_density_model(tmp_path / "m.pt", value=5.0, scale=100.0, tile_size=tile_size)
    iio.imwrite(tmp_path / "crowd.jpg", np.full((50, 70, 3), 128, np.uint8))
    argv = ["predict-image", str(tmp_path / "crowd.jpg"), "--model", str(ckpt), "--count"]
    assert main([*argv, "--out", str(tmp_path / "c.txt")]) == 0
    # 0.05 persons per pixel x 3500 pixels, tiled (32-pixel tiles, blended) or not
    assert capsys.readouterr().out.startswith("count 175.00 ")
    assert float((tmp_path / "c.txt").read_text()) == pytest.approx(175.0, rel=1e-5)
    assert main([*argv, "--out", str(tmp_path / "d.npy")]) == 0
    dens = np.load(tmp_path / "d.npy")
    assert dens.shape == (50, 70) and dens == pytest.approx(np.full((50, 70), 0.05), rel=1e-5)


def test_head_mismatch_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_checkpoint
) -> None:
    iio.imwrite(tmp_path / "crowd.png", np.full((40, 40, 3), 128, np.uint8))
    density = _constant_density_model(tmp_path / "d.pt", 1.0, 1.0)
    assert (
        main(["predict-image", str(tmp_path / "crowd.png"), "--model", str(density), "--out", "x.png"]) == 2
    )
    assert "is a density model, not segmentation: use predict_density()" in capsys.readouterr().err
    seg = tiny_checkpoint(3, 2)
    argv = ["predict-image", str(tmp_path / "crowd.png"), "--model", str(seg), "--count"]
    assert main([*argv, "--out", str(tmp_path / "c.txt")]) == 2
    assert "is a segmentation model, not density: use predict()" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "c.png")]) == 2
    assert "written as .txt (the number) or .npy" in capsys.readouterr().err
    assert not (tmp_path / "c.txt").exists()


def test_train_predict_count_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_ucf_qnrf(tmp_path / "UCF-QNRF_ECCV18", train=2, test=2)
    out = tmp_path / "run"
    argv = ["train", str(CONFIG), "--data-root", str(root), "--out", str(out), "--set", "train.epochs=1"]
    argv += [
        "model.features=[4,8,8,8,8]",
        "data.patch_size=32",
        "data.samples_per_image=2",
        "data.tile_size=64",
    ]
    argv += [
        "train.batch_size=1",
        "train.max_steps_per_epoch=1",
        "train.num_workers=0",
        "train.progress=false",
    ]
    argv += ["train.bn_stats_batches=1", "data.cache_rate=1.0"]
    assert main(argv) == 0
    info = read_info(out / "best.pt")
    assert info.args["head"] == "density" and info.out_channels == 1
    assert info.extra["density_scale"] == 100.0 and info.tile_size == 64
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["steps"] == 1 and np.isfinite(record["loss"])
    val = record["val"]
    assert val["n_cases"] == 2 and set(val["mean"]) == {"mae", "mse", "rmse"}
    capsys.readouterr()

    preds = tmp_path / "preds"
    preds.mkdir()
    for name in ("img_0001", "img_0002"):  # img_0002 is a grey JPEG, counted as RGB
        image = root / "Test" / f"{name}.jpg"
        argv = [
            "predict-image",
            str(image),
            "--model",
            str(out / "best.pt"),
            "--count",
            "--precision",
            "fp32",
        ]
        assert main([*argv, "--out", str(preds / f"{name}.txt")]) == 0
        assert capsys.readouterr().out.startswith("count ")
    assert (
        main(
            [
                "evaluate",
                "--protocol",
                "counting",
                "--pred",
                str(preds),
                "--truth",
                str(root / "Test"),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    errors = [read_count(preds / f"img_000{i}.txt") - (5 + 4 * i) for i in (1, 2)]
    assert report["metrics"]["mae"] == pytest.approx(np.mean(np.abs(errors)), rel=1e-5)
    assert report["metrics"]["rmse"] == pytest.approx(np.sqrt(np.mean(np.square(errors))), rel=1e-5)
    # the same Segmenter counted the same images during validation
    assert report["metrics"]["mae"] == pytest.approx(val["mean"]["mae"], rel=1e-4)
    assert (
        main(["evaluate", "--protocol", "counting", "--pred", str(preds), "--truth", str(root / "Test")]) == 0
    )
    assert "rmse (the papers' 'MSE')" in capsys.readouterr().out
