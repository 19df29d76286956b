"""``segnet-domains train`` and ``python pipelines/<script>.py``: runs, overrides, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from segnet_domains import read_info
from segnet_domains.cli import main
from segnet_domains.synthetic.layouts import atlas_phantoms, rite_miniature

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "pipelines" / "configs"
FAST = ["train.optimizer=adam", "train.num_workers=0", "train.progress=false", "train.batch_size=2"]


@pytest.fixture(scope="module")
def rite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rite_miniature(tmp_path_factory.mktemp("rite"), train=2, test=1)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


@pytest.mark.numerics
def test_train_with_several_set_pairs(rite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", str(CONFIGS / "rite_vessels.yaml"), "--data-root", str(rite), "--out", str(out)]
    argv += ["--set", "train.epochs=1", "model.features=[8,16,32,64,64]", "data.patch_size=32", *FAST]
    assert main(argv) == 0
    assert "done: 1 epochs" in capsys.readouterr().out
    info = read_info(out / "best.pt")
    assert info.args["features"] == [8, 16, 32, 64, 64]
    assert info.provenance["config"]["data"]["patch_size"] == 32
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "train.epoch=1"], "error: --set train.epoch: unknown config key 'train.epoch'"),
        (["--set", "model.feature=[8]"], "unknown config key 'model.feature'"),
        (["--set", "train.optimizer=rmsprop"], "train.optimizer must be sgd or adam"),
    ],
)
def test_bad_settings_are_one_line(
    rite: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    argv = [
        "train",
        str(CONFIGS / "rite_vessels.yaml"),
        "--data-root",
        str(rite),
        "--out",
        str(tmp_path),
        *extra,
    ]
    assert main(argv) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "last.pt").exists()


def test_empty_dataset_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    argv = ["train", str(CONFIGS / "atlas_lesion.yaml"), "--data-root", str(tmp_path / "empty")]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert _one_error_line(capsys) == f"error: {tmp_path / 'empty'}: no ATLAS T1w volumes found " + (
        "(expected sub-*_T1w.nii.gz in a BIDS tree)"
    )
    argv = ["train", str(CONFIGS / "rite_vessels.yaml"), "--data-root", str(tmp_path / "empty")]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert "RITE images folder not found" in _one_error_line(capsys)


def test_corrupt_volume_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = atlas_phantoms(tmp_path / "atlas", subjects=3, unlabeled=0)
    pairs[0][0].write_bytes(pairs[0][0].read_bytes()[:300])
    argv = ["train", str(CONFIGS / "atlas_lesion.yaml"), "--data-root", str(tmp_path / "atlas")]
    argv += ["--out", str(tmp_path / "o"), "--set", "train.epochs=1", *FAST]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {pairs[0][0]}: ")


@pytest.mark.numerics
def test_pipeline_script_is_the_same_command(rite: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "pipelines" / "rite_vessels.py"), "--data-root", str(rite)]
    cmd += ["--out", str(tmp_path / "p"), "--set", "train.epochs=1", "train.epochz=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --set train.epochz: unknown config key")
    assert "Traceback" not in proc.stderr
    cmd = [sys.executable, str(ROOT / "pipelines" / "atlas_lesion.py"), "--help"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--resume" in proc.stdout and "--set" in proc.stdout


@pytest.mark.numerics
def test_resume_flag(rite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    base = ["train", str(CONFIGS / "rite_vessels.yaml"), "--data-root", str(rite), "--out", str(out)]
    small = ["model.features=[4,8,8,8,8]", "data.patch_size=32", *FAST]
    assert main([*base, "--set", "train.epochs=1", *small]) == 0
    assert main([*base, "--resume", "--set", "train.epochs=2", *small]) == 0
    assert "resuming from" in capsys.readouterr().out
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]


def test_resume_without_validation_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No held-out subject: best.pt follows the latest epoch and resuming still works."""
    atlas_phantoms(tmp_path / "atlas", subjects=2, unlabeled=0)
    base = ["train", str(CONFIGS / "atlas_lesion.yaml"), "--data-root", str(tmp_path / "atlas")]
    base += ["--out", str(tmp_path / "o")]
    small = ["model.features=[4,8,8,8,8]", "data.val_fraction=0", "data.samples_per_volume=2", *FAST]
    assert main([*base, "--set", "train.epochs=1", *small]) == 0
    assert main([*base, "--resume", "--set", "train.epochs=2", *small]) == 0
    assert read_info(tmp_path / "o" / "best.pt").provenance["epoch"] == 2
