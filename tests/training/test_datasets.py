"""The published-result data sets: miniature layouts indexed, trained one step and evaluated through the CLI.

Every generator in ``tests/data/benchmarks.py`` writes a data set in its
distributed formats; these tests check that the task reads it as declared
(split sizes, label mapping with void pixels, band count) and that the
config in ``pipelines/configs/`` trains for one step (tiny model, tiny
sizes), predicts the split and scores it through ``segnet-domains``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest

from segnet_domains.checkpoint import load_checkpoint
from segnet_domains.cli import main
from segnet_domains.datasets.layout import IGNORE, resolve_listed
from segnet_domains.errors import InputError
from segnet_domains.medical.atlas_r12 import find_r12_subjects, kfold
from segnet_domains.training import build_config, get_task
from tests.data import benchmarks as B

CONFIGS = Path(__file__).resolve().parents[2] / "pipelines" / "configs"

#: One step of a tiny SegNet; validation on the tiny split.
TINY = [
    "train.epochs=1",
    "train.max_steps_per_epoch=1",
    "train.batch_size=2",
    "train.num_workers=0",
    "train.progress=false",
    "train.bn_stats_batches=1",
    "train.val_every=1",
    "model.features=[4,8,8,8,8]",
]


@dataclass
class Family:
    """A data set under test: its config, generator, split to score and expectations."""

    config: str
    make: Callable[[Path], B.Mini]
    train_split: str
    eval_split: str
    bands: list[str]
    classes: int
    extra: list[str] = field(default_factory=list)


FAMILIES = {
    "camvid": Family("camvid", B.make_camvid, "train", "test", ["red", "green", "blue"], 11),
    "sunrgbd": Family(
        "sunrgbd", B.make_sunrgbd, "train", "test", ["red", "green", "blue"], 37, ["data.size=[32,32]"]
    ),
    "mfn": Family("mfn", B.make_mfn, "train", "test_night", ["red", "green", "blue", "thermal"], 9),
    "ade20k": Family(
        "ade20k",
        B.make_ade20k,
        "training",
        "validation",
        ["red", "green", "blue"],
        150,
        ["data.size=[32,32]"],
    ),
    "skyscapes_dense": Family(
        "skyscapes_dense",
        B.make_skyscapes,
        "train",
        "val",
        ["red", "green", "blue"],
        20,
        ["data.patch_size=32", "data.samples_per_image=2", "data.tile_size=32", "data.tile_overlap=8"],
    ),
    "tlcgis": Family("tlcgis", B.make_tlcgis, "train", "test", ["red", "green", "blue", "lidar"], 2),
}


@pytest.fixture(scope="module")
def minis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, B.Mini]:
    return {name: fam.make(tmp_path_factory.mktemp(name)) for name, fam in FAMILIES.items()}


def _task(name: str, root: Path, tmp: Path, overrides: list[str] = ()):  # type: ignore[assignment]
    cfg = build_config(CONFIGS / f"{FAMILIES[name].config}.yaml", list(overrides), data_root=root, out=tmp)
    return get_task(cfg["task"])(cfg)


# --------------------------------------------------------------------------- indexing


@pytest.mark.parametrize("name", list(FAMILIES))
def test_layout_is_indexed_as_declared(name: str, minis: dict[str, B.Mini], tmp_path: Path) -> None:
    fam, mini = FAMILIES[name], minis[name]
    task = _task(name, mini.root, tmp_path)
    assert task.layout.num_classes == fam.classes
    for split, n in mini.counts.items():
        samples = task.samples(split)
        assert len(samples) == n, split
        assert samples[0].name == mini.first[split]
        image, label = task.load(samples[0])
        assert image.shape[0] == len(fam.bands) and image.shape[1:] == label.shape
        assert int((label == IGNORE).sum()) == mini.void_pixels[split]
        assert set(np.unique(label[label != IGNORE]).tolist()) <= set(range(fam.classes))
        native = task.read_native_label(samples[0])
        if name != "tlcgis":  # every non-road value of a TLCGIS mask is written back as 255
            np.testing.assert_array_equal(task.layout.to_native(label), native)
    assert task.metadata()["band_names"] == fam.bands
    assert task.metadata()["in_channels"] == len(fam.bands)
    seen = set()
    for split in mini.counts:
        for s in task.samples(split):
            seen |= set(np.unique(task.read_native_label(s)).tolist())
    assert seen == mini.native_values


def test_camvid_labels_map_void_and_refuse_unknown_values() -> None:
    from segnet_domains.datasets.camvid import LAYOUT

    native = np.array([[0, 10, 11], [3, 11, 5]])
    classes = LAYOUT.to_classes(native, "x.png")
    np.testing.assert_array_equal(classes, [[0, 10, IGNORE], [3, IGNORE, 5]])
    with pytest.raises(InputError, match=r"x\.png.*12"):
        LAYOUT.to_classes(np.array([[12, 0]]), "x.png")


def test_ade20k_and_sunrgbd_shift_labels_past_zero(minis: dict[str, B.Mini], tmp_path: Path) -> None:
    from segnet_domains.datasets import ade20k, sunrgbd

    np.testing.assert_array_equal(ade20k.LAYOUT.to_classes(np.array([0, 1, 150]), "a"), [IGNORE, 0, 149])
    np.testing.assert_array_equal(sunrgbd.LAYOUT.to_classes(np.array([0, 1, 37]), "s"), [IGNORE, 0, 36])
    names = _task("ade20k", minis["ade20k"].root, tmp_path).metadata()["class_names"]
    assert names[:3] == ["wall", "building", "sky"] and len(names) == 150


def test_index_paths_of_another_machine_resolve_by_trailing_parts(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    target = tmp_path / "train" / "a.png"
    target.write_bytes(b"x")
    assert resolve_listed(tmp_path, "/SegNet/CamVid/train/a.png", "train.txt") == target
    assert resolve_listed(tmp_path, r"C:\data\CamVid\train\a.png", "train.txt") == target
    with pytest.raises(InputError, match="train.txt"):
        resolve_listed(tmp_path, "/SegNet/CamVid/train/missing.png", "train.txt")


def test_sunrgbd_rgbd_reads_decoded_depth_as_a_fourth_band(minis: dict[str, B.Mini], tmp_path: Path) -> None:
    task = _task("sunrgbd", minis["sunrgbd"].root, tmp_path, ["data.bands=[red,green,blue,depth]"])
    image, _ = task.load(task.samples("train")[0])
    assert image.shape[0] == 4
    np.testing.assert_allclose(image[3, 0, [0, -1]], [500, 4000], atol=1)  # millimetres, as written
    meta = task.metadata()
    assert meta["band_names"] == ["red", "green", "blue", "depth"]
    assert meta["normalization"]["mean"][3] == 5000 and meta["normalization"]["std"][3] == 5000


@pytest.mark.parametrize("name", ["mfn", "tlcgis"])
def test_extra_band_can_be_left_out(name: str, minis: dict[str, B.Mini], tmp_path: Path) -> None:
    task = _task(name, minis[name].root, tmp_path, ["data.bands=[red,green,blue]"])
    image, _ = task.load(task.samples("train")[0])
    full, _ = _task(name, minis[name].root, tmp_path).load(task.samples("train")[0])
    np.testing.assert_array_equal(image, full[:3])


# --------------------------------------------------------------------------- CLI: train, predict, evaluate


@pytest.fixture(scope="module")
def trained(minis: dict[str, B.Mini], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``trained(name)``: the run folder of one CLI training step on the miniature (trained once)."""
    runs: dict[str, Path] = {}

    def run(name: str) -> Path:
        if name not in runs:
            fam, out = FAMILIES[name], tmp_path_factory.mktemp(f"run_{name}")
            args = ["train", str(CONFIGS / f"{fam.config}.yaml"), "--data-root", str(minis[name].root)]
            assert main([*args, "--out", str(out), "--set", *TINY, *fam.extra]) == 0
            runs[name] = out
        return runs[name]

    return run


@pytest.mark.parametrize("name", list(FAMILIES))
def test_config_trains_one_step_and_scores_through_the_cli(
    name: str,
    minis: dict[str, B.Mini],
    trained: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fam, mini = FAMILIES[name], minis[name]
    out = trained(name)
    info = load_checkpoint(out / "best.pt").info
    assert info.band_names == fam.bands and info.out_channels == fam.classes
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["steps"] == 1 and np.isfinite(record["loss"])

    pred = tmp_path / "pred"
    rc = main(
        ["predict-split", "--model", str(out / "best.pt"), "--split", fam.eval_split, "--out-dir", str(pred)]
    )
    assert rc == 0
    n = mini.counts[fam.eval_split]
    assert len(list((pred / "pred").glob("*.png"))) == n == len(list((pred / "truth").glob("*.png")))
    first = iio.imread(pred / "truth" / f"{mini.first[fam.eval_split]}.png")
    task = _task(name, mini.root, tmp_path)
    sample = task.samples(fam.eval_split)[0]
    expected = task.layout.to_native(task.layout.to_classes(task.read_native_label(sample), "t"))
    np.testing.assert_array_equal(first, expected)  # truth written in the distribution's encoding
    predicted = iio.imread(pred / "pred" / f"{mini.first[fam.eval_split]}.png")
    assert predicted.shape == first.shape
    assert set(np.unique(predicted).tolist()) <= set(task.layout.label_values)  # native class values
    capsys.readouterr()
    k = max(fam.classes, *mini.native_values) + 1
    assert main(["evaluate", "--pred", str(pred / "pred"), "--truth", str(pred / "truth"), "--json",
                 "--classes", str(k)]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["n_cases"] == n


def test_predict_split_refuses_to_write_over_files(trained: Callable[[str], Path], tmp_path: Path) -> None:
    (tmp_path / "pred").mkdir(parents=True)
    (tmp_path / "pred" / "keep.png").write_bytes(b"x")
    model = str(trained("camvid") / "best.pt")
    assert main(["predict-split", "--model", model, "--split", "test", "--out-dir", str(tmp_path)]) == 2
    assert (tmp_path / "pred" / "keep.png").read_bytes() == b"x"


def test_camvid_basic_config_builds_segnet_basic(minis: dict[str, B.Mini], tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "train",
        str(CONFIGS / "camvid_basic.yaml"),
        "--data-root",
        str(minis["camvid"].root),
        "--out",
        str(out),
    ]
    assert main([*args, "--set", *[t for t in TINY if not t.startswith("model.")], "model.features=4"]) == 0
    assert load_checkpoint(out / "best.pt").info.architecture == "SegNetBasic"


def test_mfn_four_channel_png_predicts_through_predict_image(
    minis: dict[str, B.Mini], trained: Callable[[str], Path], tmp_path: Path
) -> None:
    image = minis["mfn"].root / "images" / "00005D.png"
    assert iio.imread(image).shape[-1] == 4
    model = str(trained("mfn") / "best.pt")
    assert main(["predict-image", str(image), "--model", model, "--out", str(tmp_path / "p.png")]) == 0
    assert iio.imread(tmp_path / "p.png").shape == (24, 32)


# --------------------------------------------------------------------------- ATLAS R1.2


@pytest.fixture(scope="module")
def atlas_r12_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("atlas_r12")
    B.make_atlas_r12(root)
    return root


def test_atlas_r12_subjects_masks_and_folds(atlas_r12_root: Path, tmp_path: Path) -> None:
    subjects = find_r12_subjects(atlas_r12_root)
    assert [s.name for s in subjects] == [f"c0001s{i:04d}t01" for i in range(1, 6)]
    assert [len(s.masks) for s in subjects] == [1, 2, 1, 1, 1]
    vals = [kfold(subjects, 5, f)[1] for f in range(5)]
    assert sorted(s.name for v in vals for s in v) == sorted(s.name for s in subjects)  # each once
    train, val = kfold(subjects, 5, 2)
    assert not {s.name for s in train} & {s.name for s in val}
    cfg = build_config(CONFIGS / "atlas_r12.yaml", ["data.fold=1"], data_root=atlas_r12_root, out=tmp_path)
    task = get_task("atlas_r12")(cfg)
    union = task.ras_label(subjects[1])
    parts = [nib.load(p).get_fdata() > 0 for p in subjects[1].masks]
    assert union.sum() == (parts[0] | parts[1]).sum() > 0
    with pytest.raises(InputError, match="data.fold"):
        kfold(subjects, 5, 5)


def test_atlas_r12_trains_cropped_slices_and_scores_a_patient(atlas_r12_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    tiny = [t for t in TINY if "batch_size" not in t] + ["train.batch_size=1", "data.crop=[24,32]"]
    args = ["train", str(CONFIGS / "atlas_r12.yaml"), "--data-root", str(atlas_r12_root), "--out", str(out)]
    assert main([*args, "--set", *tiny, "data.samples_per_volume=2"]) == 0
    cfg = build_config(CONFIGS / "atlas_r12.yaml", ["data.crop=[24,32]"], data_root=atlas_r12_root, out=out)
    task = get_task("atlas_r12")(cfg)
    batch = next(iter(task.train_dataset()))
    assert tuple(batch[0]["image"].shape) == (1, 24, 32)  # the axial crop (x, y) of the 28x36 slices
    val = task.subjects()[1][0]
    t1w, mask = val.image, val.masks[0]
    pred = tmp_path / "pred.nii.gz"
    assert main(["predict-volume", str(t1w), "--model", str(out / "best.pt"), "--out", str(pred)]) == 0
    assert main(["evaluate", "--pred", str(pred), "--truth", str(mask)]) == 0


def test_camvid_config_carries_the_tutorial_class_weights() -> None:
    from segnet_domains.datasets.camvid import TUTORIAL_CLASS_WEIGHTS

    cfg = build_config(CONFIGS / "camvid.yaml", data_root="unused")
    assert tuple(cfg["train"]["class_weights"]) == TUTORIAL_CLASS_WEIGHTS
    assert cfg["train"]["batch_size"] == 12 and cfg["train"]["lambda_dice"] == 0.0
