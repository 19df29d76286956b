"""Hostile inputs for ``train`` (configs, --set, run folders), ``evaluate`` and ``demo``."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from tests.hostile.conftest import Assets, Table, check_case, fifo, nifti, png, run_main

TRAIN, EVALUATE, DEMO = Table(), Table(), Table()


def _train(w: Path, a: Assets, *extra: str, config: Path | None = None, out: str = "run") -> list[str]:
    cfg = str(config or a.config)
    return ["train", cfg, "--data-root", str(a.rite), "--out", str(w / out), *extra]


def _yaml(w: Path, text: str, name: str = "c.yaml") -> Path:
    (w / name).write_text(text)
    return w / name


def _set(w: Path, a: Assets, *pairs: str) -> list[str]:
    return _train(w, a, "--set", *pairs)


# ----------------------------------------------------------------------------- config types and values


@TRAIN.case()
def yaml_lr_fast(w, a):
    cfg = _yaml(w, "task: rite_vessels\ntrain:\n  lr: fast\n")
    return _train(w, a, config=cfg), ["c.yaml", "train.lr must be a number, got 'fast' (str)"]


@TRAIN.case()
def set_lr_abc(w, a):
    return _set(w, a, "train.lr=abc"), ["--set train.lr", "train.lr must be a number, got 'abc' (str)"]


@TRAIN.case()
def set_lr_negative(w, a):
    return _set(w, a, "train.lr=-0.1"), ["train.lr must be a positive number"]


@TRAIN.case()
def set_lr_nan(w, a):
    return _set(w, a, "train.lr=.nan"), ["train.lr must be a positive number"]


@TRAIN.case()
def set_epochs_float(w, a):
    return _set(w, a, "train.epochs=1.5"), ["train.epochs must be an integer, got 1.5 (float)"]


@TRAIN.case()
def set_epochs_bool(w, a):
    return _set(w, a, "train.epochs=true"), ["train.epochs must be an integer, got True (bool)"]


@TRAIN.case()
def set_epochs_zero(w, a):
    return _set(w, a, "train.epochs=0"), ["train.epochs must be a positive integer"]


@TRAIN.case()
def set_batch_negative(w, a):
    return _set(w, a, "train.batch_size=-1"), ["train.batch_size must be a positive integer"]


@TRAIN.case()
def set_workers_negative(w, a):
    return _set(w, a, "train.num_workers=-1"), ["train.num_workers"]


@TRAIN.case()
def set_progress_text(w, a):
    return _set(w, a, "train.progress=maybe"), ["train.progress must be true or false"]


@TRAIN.case()
def set_features_malformed(w, a):
    return _set(w, a, "model.features=[8,16"), ["--set model.features", "malformed list '[8,16'"]


@TRAIN.case()
def set_features_text(w, a):
    return _set(w, a, "model.features=wide"), ["model.features must be a list, got 'wide'"]


@TRAIN.case()
def set_features_absurd(w, a):
    return _set(w, a, "model.features=[100000,100000]"), ["model.features must be widths in [1, 16384]"]


@TRAIN.case()
def set_features_negative(w, a):
    return _set(w, a, "model.features=[-8,16]"), ["model.features"]


@TRAIN.case()
def set_dropout_two(w, a):
    return _set(w, a, "model.dropout=2"), ["model.dropout must be a number in [0, 1)"]


@TRAIN.case()
def set_mapping_malformed(w, a):
    return _set(w, a, "data.normalization={mode: percentile"), [
        "--set data.normalization",
        "malformed mapping",
    ]


@TRAIN.case()
def set_without_equals(w, a):
    return _set(w, a, "train.lr"), ["--set", "expected key=value"]


@TRAIN.case()
def set_empty_key(w, a):
    return _set(w, a, "=3"), ["--set", "expected key=value"]


@TRAIN.case()
def set_unknown_key(w, a):
    return _set(w, a, "train.speed=11"), ["unknown config key 'train.speed'"]


@TRAIN.case()
def set_section_as_value(w, a):
    return _set(w, a, "train=3"), ["is a section"]


@TRAIN.case()
def yaml_top_is_a_list(w, a):
    return _train(w, a, config=_yaml(w, "- a\n- b\n")), ["c.yaml", "expected a mapping"]


@TRAIN.case()
def yaml_invalid(w, a):
    return _train(w, a, config=_yaml(w, "train: [1, 2\n")), ["c.yaml", "invalid YAML"]


@TRAIN.case()
def yaml_binary(w, a):
    (w / "b.yaml").write_bytes(b"\xff\xfe\x00\x01" * 20)
    return _train(w, a, config=w / "b.yaml"), ["b.yaml"]


@TRAIN.case()
def yaml_python_object(w, a):
    cfg = _yaml(w, "task: !!python/object/apply:os.system ['touch pwned']\n")
    return _train(w, a, config=cfg), ["c.yaml", "invalid YAML"]


@TRAIN.case()
def config_missing(w, a):
    return _train(w, a, config=w / "none.yaml"), ["none.yaml", "config file not found"]


@TRAIN.case()
def config_folder(w, a):
    (w / "d.yaml").mkdir()
    return _train(w, a, config=w / "d.yaml"), ["d.yaml", "is a folder"]


@TRAIN.case()
def config_fifo(w, a):
    return _train(w, a, config=fifo(w / "f.yaml")), ["f.yaml", "FIFO"]


@TRAIN.case()
def unknown_task(w, a):
    return _train(w, a, config=_yaml(w, "task: segment_everything\n")), ["segment_everything"]


# ----------------------------------------------------------------------------- the run folder


@TRAIN.case()
def out_is_a_file(w, a):
    (w / "run").write_text("mine")
    return _train(w, a), ["run", "exists and is not a folder"]


@TRAIN.case()
def out_under_a_file(w, a):
    (w / "f").write_text("mine")
    return _train(w, a, out="f/run"), ["cannot create the output folder"]


@TRAIN.case()
def out_is_a_foreign_folder(w, a):
    (w / "run").mkdir()
    (w / "run" / "notes.txt").write_text("mine")
    return _train(w, a), ["run", "not a training run"]


@TRAIN.case()
def out_is_a_foreign_folder_force(w, a):
    (w / "run").mkdir()
    (w / "run" / "notes.txt").write_text("mine")
    return _train(w, a, "--force"), ["run", "not a training run"]


@TRAIN.case()
def out_is_the_data_root(w, a):
    return ["train", str(a.config), "--data-root", str(a.rite), "--out", str(a.rite)], ["is also an input"]


@TRAIN.case()
def out_is_the_config(w, a):
    cfg = _yaml(w, (a.config).read_text())
    return _train(w, a, config=cfg, out="c.yaml"), ["c.yaml", "is also an input"]


@TRAIN.case()
def out_holds_an_earlier_run(w, a):
    (w / "run").mkdir()
    (w / "run" / "metrics.jsonl").write_text("{}\n")
    return _train(w, a), ["run", "earlier training run", "--force"]


@TRAIN.case()
def resume_without_a_run(w, a):
    return _train(w, a, "--resume"), ["run", "no training run to resume"]


@TRAIN.case()
def resume_an_empty_folder(w, a):
    (w / "run").mkdir()
    return _train(w, a, "--resume"), ["run", "is empty"]


@TRAIN.case()
def out_fifo(w, a):
    fifo(w / "run")
    return _train(w, a), ["run", "FIFO"]


# ----------------------------------------------------------------------------- evaluate


def _pair(w: Path) -> tuple[Path, Path]:
    iio.imwrite(w / "p.png", np.zeros((8, 8), np.uint8))
    iio.imwrite(w / "t.png", np.ones((8, 8), np.uint8))
    return w / "p.png", w / "t.png"


@EVALUATE.case()
def classes_0(w, a):
    p, t = _pair(w)
    return ["evaluate", "--pred", str(p), "--truth", str(t), "--classes", "0"], ["--classes", "[1, 65536]"]


@EVALUATE.case()
def classes_negative(w, a):
    p, t = _pair(w)
    return ["evaluate", "--pred", str(p), "--truth", str(t), "--classes", "-2"], ["--classes"]


@EVALUATE.case()
def classes_text(w, a):
    p, t = _pair(w)
    return ["evaluate", "--pred", str(p), "--truth", str(t), "--classes", "two"], ["--classes"]


@EVALUATE.case()
def classes_too_few_for_the_labels(w, a):
    p, t = _pair(w)
    return ["evaluate", "--pred", str(p), "--truth", str(t), "--classes", "1"], [
        "outside the declared classes"
    ]


@EVALUATE.case()
def pred_fifo(w, a):
    _, t = _pair(w)
    return ["evaluate", "--pred", str(fifo(w / "f.png")), "--truth", str(t)], ["f.png", "FIFO"]


@EVALUATE.case()
def truth_device(w, a):
    p, _ = _pair(w)
    return ["evaluate", "--pred", str(p), "--truth", "/dev/zero"], ["/dev/zero", "device"]


@EVALUATE.case()
def pred_missing(w, a):
    _, t = _pair(w)
    return ["evaluate", "--pred", str(w / "none.png"), "--truth", str(t)], ["none.png", "not found"]


@EVALUATE.case()
def file_against_folder(w, a):
    p, _ = _pair(w)
    (w / "d").mkdir()
    return ["evaluate", "--pred", str(p), "--truth", str(w / "d")], ["both be files or both be folders"]


@EVALUATE.case()
def pred_text(w, a):
    _, t = _pair(w)
    (w / "x.png").write_text("no")
    return ["evaluate", "--pred", str(w / "x.png"), "--truth", str(t)], ["x.png", "not a readable image"]


@EVALUATE.case()
def pred_colour(w, a):
    _, t = _pair(w)
    png(w / "c.png", (8, 8, 3))
    return ["evaluate", "--pred", str(w / "c.png"), "--truth", str(t)], ["c.png", "colour image"]


@EVALUATE.case()
def shapes_differ(w, a):
    _, t = _pair(w)
    iio.imwrite(w / "big.png", np.zeros((9, 8), np.uint8))
    return ["evaluate", "--pred", str(w / "big.png"), "--truth", str(t)], ["shape"]


@EVALUATE.case()
def nifti_claiming_more(w, a):
    nifti(w / "t.nii", (6, 6, 6))
    (w / "p.nii").write_bytes((w / "t.nii").read_bytes()[:400])
    return ["evaluate", "--pred", str(w / "p.nii"), "--truth", str(w / "t.nii")], ["p.nii", "truncated"]


# ----------------------------------------------------------------------------- demo (refused before any work)


@DEMO.case()
def demo_into_a_file(w, a):
    (w / "d").write_text("mine")
    return ["demo", "--out", str(w / "d")], ["d", "exists and is not a folder"]


@DEMO.case()
def demo_under_a_file(w, a):
    (w / "f").write_text("mine")
    return ["demo", "--out", str(w / "f" / "d")], ["cannot create the output folder"]


@DEMO.case()
def demo_into_a_foreign_folder(w, a):
    (w / "d").mkdir()
    (w / "d" / "photos.zip").write_text("mine")
    return ["demo", "--out", str(w / "d")], ["d", "not a demo folder"]


@DEMO.case()
def demo_into_a_fifo(w, a):
    return ["demo", "--out", str(fifo(w / "d"))], ["FIFO"]


@DEMO.case()
def demo_only_bogus(w, a):
    return ["demo", "--out", str(w / "d"), "--only", "cats"], ["--only"]


@pytest.mark.parametrize("case", TRAIN, ids=TRAIN.ids)
def test_train(case, tmp_path: Path, assets: Assets, capsys: pytest.CaptureFixture[str]) -> None:
    check_case(case, tmp_path, assets, capsys)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("case", EVALUATE, ids=EVALUATE.ids)
def test_evaluate(case, tmp_path: Path, assets: Assets, capsys: pytest.CaptureFixture[str]) -> None:
    check_case(case, tmp_path, assets, capsys)


@pytest.mark.parametrize("case", DEMO, ids=DEMO.ids)
def test_demo(case, tmp_path: Path, assets: Assets, capsys: pytest.CaptureFixture[str]) -> None:
    check_case(case, tmp_path, assets, capsys)


@pytest.mark.parametrize("command", ["train", "demo"])
def test_read_only_file_system(command: str, read_only_dir: Path, assets: Assets, capsys) -> None:
    out = str(read_only_dir / "run")
    argv = ["train", str(assets.config), "--data-root", str(assets.rite), "--out", out]
    code, _, err = run_main(argv if command == "train" else ["demo", "--out", out], capsys)
    assert code == 2 and err.strip().endswith("is on a read-only file system"), err
