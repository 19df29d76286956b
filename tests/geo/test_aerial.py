"""Aerial training: pairs, label-raster checks, rare-class windows, a short run on the shared engine."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
from affine import Affine

from segnet_domains import InputError, read_info
from segnet_domains.cli import main
from segnet_domains.geo.dataset import (
    IGNORE_INDEX,
    AerialPair,
    class_frequencies,
    find_pairs,
    load_sample,
    rare_class_ratios,
)
from segnet_domains.training import build_config, get_task, train
from tests.data.geo import CLASS_NAMES, make_aerial_dataset, make_label_raster, make_scene

CONFIG = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "aerial.yaml"
TINY = [
    "model.features=[8,16,32,32,32]",
    f"data.class_names={CLASS_NAMES}".replace("'", ""),
    "data.class_colors=null",
    "data.patch_size=64",
    "data.samples_per_scene=4",
    "data.tile_size=64",
    "train.batch_size=8",
    "train.optimizer=adam",
    "train.lr=0.003",
    "train.num_workers=0",
    "train.device=cpu",
    "train.progress=false",
    "train.bn_stats_batches=2",
]


@pytest.fixture(scope="module")
def aerial_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_aerial_dataset(tmp_path_factory.mktemp("aerial"), n=4, size=96)


def test_find_pairs_and_png_tiles(tmp_path: Path, aerial_root: Path) -> None:
    pairs = find_pairs(aerial_root)
    assert [p.name for p in pairs] == [f"scene_{i:02d}" for i in range(4)]
    assert all(p.label == aerial_root / "labels" / f"{p.name}.tif" for p in pairs)
    (tmp_path / "images").mkdir(), (tmp_path / "labels").mkdir()
    iio.imwrite(tmp_path / "images" / "t1.png", np.full((40, 50, 3), 90, np.uint8))
    iio.imwrite(tmp_path / "labels" / "t1.png", np.ones((40, 50), np.uint8))
    (png,) = find_pairs(tmp_path)
    s = load_sample(png)
    assert s.image.shape == (3, 40, 50) and s.label.shape == (40, 50) and s.valid.all()
    iio.imwrite(tmp_path / "images" / "t2.png", np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(InputError, match=r"t2.png: no label file labels/t2\.\*"):
        find_pairs(tmp_path)


def test_load_sample_ignores_nodata_and_unlabelled(aerial_root: Path) -> None:
    s = load_sample(find_pairs(aerial_root)[0])
    assert s.image.shape == (3, 96, 96) and s.band_names == ["blue", "green", "red"]
    assert (s.label[~s.valid] == IGNORE_INDEX).all() and (~s.valid).any()
    assert set(np.unique(s.label[s.valid])) <= {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": 80}, "label raster is 80×80 pixels but its image img.tif is 96×96"),
        ({"crs": "EPSG:32634"}, "label CRS EPSG:32634 differs from its image's EPSG:32633"),
        ({"shift": 30.0}, "label geotransform .* differs from its image's"),
    ],
)
def test_label_raster_must_fit_its_image(tmp_path: Path, change: dict, message: str) -> None:
    img, truth = make_scene(tmp_path / "img.tif", 96, 96)
    size = change.get("size", 96)
    lab = make_label_raster(tmp_path / "lab.tif", truth[:size, :size], crs=change.get("crs", "EPSG:32633"))
    if "shift" in change:
        with rasterio.open(lab, "r+") as dst:
            dst.transform = dst.transform @ Affine.translation(1, 0)
    with pytest.raises(InputError, match=message) as err:
        load_sample(AerialPair("x", img, lab))
    assert str(err.value).startswith(str(lab))


def test_rare_classes_get_more_windows() -> None:
    labels = [np.array([[0] * 90 + [1] * 9 + [2] * 1])]
    freq = class_frequencies(labels, 4)
    np.testing.assert_allclose(freq, [0.9, 0.09, 0.01, 0.0])
    ratios = rare_class_ratios(freq)
    assert ratios[3] == 0 and ratios[2] > ratios[1] > ratios[0] and abs(sum(ratios) - 1) < 1e-9


def test_windows_are_weighted_towards_rare_classes(aerial_root: Path, tmp_path: Path) -> None:
    config = build_config(
        CONFIG, [*TINY, "data.patch_size=16", "data.samples_per_scene=64"], data_root=aerial_root
    )
    task = get_task("aerial")(config)
    ds = task.train_dataset()
    centres = []
    for i in range(len(ds)):
        for item in ds[i]:
            centres.append(int(np.asarray(item["label"])[0, 8, 8]))
    centre_freq = np.bincount([c for c in centres if c != IGNORE_INDEX], minlength=4) / len(centres)
    pixel_freq = class_frequencies([s.label for s in task._train_samples()], 4)
    rare = int(np.argmin(np.where(pixel_freq > 0, pixel_freq, 1)))
    assert centre_freq[rare] > 1.5 * pixel_freq[rare]  # the rarest class is over-sampled
    item = ds[0][0]
    assert item["image"].shape == (3, 16, 16) and item["mask"].shape == (1, 16, 16)


@pytest.mark.numerics
def test_short_training_run_on_the_shared_engine(aerial_root: Path, tmp_path: Path) -> None:
    first = build_config(CONFIG, [*TINY, "train.epochs=1"], data_root=aerial_root, out=tmp_path / "run")
    train(first)
    config = build_config(CONFIG, [*TINY, "train.epochs=2"], data_root=aerial_root, out=tmp_path / "run")
    result = train(config, resume=True)  # the engine's resume, shared with the medical pipelines
    assert [r["epoch"] for r in result.history] == [1, 2]
    info = read_info(result.best)
    assert info.domain == "aerial" and info.class_names == CLASS_NAMES and info.tile_size == 64
    assert info.band_names == ["blue", "green", "red"] and info.in_channels == 3
    val = result.history[-1]["val"]
    assert val["n_cases"] == 1 and 0 <= val["miou"] <= 1 and val["mean"]["dice"] is not None
    assert set(val["per_class_mean"]) == set(CLASS_NAMES)
    assert all("jaccard" in v for v in val["per_class_mean"].values())
    # the checkpoint tiles a scene right away
    out = tmp_path / "maps"
    code = main(
        ["tile", str(aerial_root / "images" / "scene_00.tif"), "-m", str(result.best), "-o", str(out)]
    )
    assert code == 0 and (out / "scene_00_labels.tif").is_file()


def test_bad_label_values_are_named(aerial_root: Path, tmp_path: Path) -> None:
    root = make_aerial_dataset(tmp_path / "bad", n=2, size=64)
    lab = root / "labels" / "scene_00.tif"
    with rasterio.open(lab, "r+") as dst:
        arr = dst.read(1)
        arr[32, 32] = 9
        dst.write(arr, 1)
    config = build_config(CONFIG, [*TINY, "train.epochs=1"], data_root=root, out=tmp_path / "o")
    with pytest.raises(
        InputError, match=r"scene_00.tif: mask has values 9 outside the declared classes 0..3"
    ):
        train(config)
