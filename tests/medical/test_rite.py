"""RITE layout: colour code, vessel/AV tasks, field of view, bad files."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from segnet_domains.errors import InputError
from segnet_domains.medical.rite import (
    UNKNOWN,
    RiteArteryVeinTask,
    RiteVesselTask,
    decode_av,
    find_samples,
    load_pair,
)
from segnet_domains.synthetic.layouts import rite_miniature
from segnet_domains.training import build_config

CONFIGS = Path(__file__).resolve().parents[2] / "pipelines" / "configs"


@pytest.fixture
def rite(tmp_path: Path) -> Path:
    return rite_miniature(tmp_path / "rite", train=2, test=1)


def test_colour_code() -> None:
    rgb = np.array(
        [[[0, 0, 0], [255, 0, 0], [0, 0, 255]], [[0, 255, 0], [255, 255, 255], [250, 3, 2]]], np.uint8
    )
    assert decode_av(rgb, "x").tolist() == [[0, 1, 2], [3, UNKNOWN, 1]]
    rgb[0, 0] = [255, 255, 0]  # yellow is not in the code
    with pytest.raises(
        InputError, match=r"x\.png: mask values outside the declared classes: colours \[\(255, 255, 0\)\]"
    ):
        decode_av(rgb, "x.png")


def test_layout_and_names(rite: Path) -> None:
    samples = find_samples(rite, "training")
    assert [s.name for s in samples] == ["21_training", "22_training"]
    assert samples[0].av == rite / "training" / "av" / "21_training.png"
    assert samples[0].fov == rite / "training" / "mask" / "21_training_mask.gif"
    assert [s.name for s in find_samples(rite, "test")] == ["01_test"]


def test_vessel_and_av_labels_and_fov(rite: Path) -> None:
    sample = find_samples(rite, "training")[0]
    av = iio.imread(sample.av)
    vessels = load_pair(sample, vessels=True)
    assert vessels.image.shape == (64, 72, 3) and vessels.image.dtype == np.uint8
    assert np.array_equal(vessels.labels, av.any(-1).astype(np.uint8))  # any non-black = vessel
    arteries = load_pair(sample, vessels=False)
    assert set(np.unique(arteries.labels).tolist()) <= {0, 1, 2, 3, UNKNOWN}
    assert np.array_equal(arteries.labels == 1, (av == [255, 0, 0]).all(-1))
    assert 0 < vessels.fov.mean() < 1  # a disk, corners outside


def test_tasks_metadata(rite: Path) -> None:
    cfg = build_config(CONFIGS / "rite_vessels.yaml", data_root=rite)
    assert RiteVesselTask(cfg).metadata()["class_names"] == ["background", "vessel"]
    av = RiteArteryVeinTask(cfg)
    assert av.metadata()["out_channels"] == 4 and av.ignore_index == UNKNOWN
    cases = list(av.val_cases())
    assert cases[0].mask is not None and cases[0].mask.dtype == bool and not cases[0].volume


def test_bad_inputs(rite: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="RITE images folder not found"):
        find_samples(tmp_path, "training")
    (tmp_path / "training" / "images").mkdir(parents=True)
    with pytest.raises(InputError, match="no images found"):
        find_samples(tmp_path, "training")
    # size mismatch between image and annotation
    sample = find_samples(rite, "training")[0]
    iio.imwrite(sample.av, np.zeros((60, 72, 3), np.uint8))
    with pytest.raises(
        InputError, match=r"21_training\.png: label size \(60, 72\) does not match image size \(64, 72\)"
    ):
        load_pair(sample, vessels=True)
    # a corrupt image: an error naming it, or skipped with a warning when the config says so
    find_samples(rite, "training")[1].image.write_bytes(b"not a tiff")
    cfg = build_config(CONFIGS / "rite_vessels.yaml", data_root=rite)
    task = RiteVesselTask(cfg)
    with pytest.raises(InputError, match=r"21_training\.png|22_training\.tif"):
        task.train_dataset()
    iio.imwrite(sample.av, np.zeros((64, 72, 3), np.uint8))
    with pytest.raises(InputError, match=r"22_training\.tif: not a readable image"):
        RiteVesselTask(cfg).train_dataset()
    cfg["data"]["skip_corrupt"] = True
    with pytest.warns(UserWarning, match=r"22_training\.tif.*skipped"):
        ds = RiteVesselTask(cfg).train_dataset()
    assert len(ds) == 1
