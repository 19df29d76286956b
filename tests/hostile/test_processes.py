"""Where process behaviour matters: a FIFO that must not hang, concurrent ``tile`` runs, SIGKILL and rerun.

Each compares with an uninterrupted run: a killed and rerun ``tile`` gives the
same labels, a killed ``train`` resumed (or restarted, when killed before its
first checkpoint) gives the same losses.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from segnet_domains.cli import main
from segnet_domains.io.safety import LOCK_NAME
from tests.data.geo import make_scene
from tests.hostile.conftest import Assets, fifo, run_main

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore"}
TILE_ARGS = ["--tile", "64", "--overlap", "16", "--batch-size", "4", "--device", "cpu", "--no-progress"]


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "segnet_domains", *argv]


def test_info_on_a_fifo_does_not_hang(tmp_path: Path) -> None:
    path = fifo(tmp_path / "model.pt")
    proc = subprocess.run(_cli("info", str(path)), capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {path}: is a named pipe (FIFO), not a regular file"]


def test_console_script_refuses_a_lying_header_without_traceback(tmp_path: Path, assets: Assets) -> None:
    import gzip

    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape((32000, 32000, 32000))
    (tmp_path / "big.nii.gz").write_bytes(gzip.compress(hdr.binaryblock + b"\0" * 4100))
    argv = _cli(
        "predict-volume", str(tmp_path / "big.nii.gz"), "-m", str(assets.ckpt1), "-o", str(tmp_path / "o.nii")
    )
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "big.nii.gz" in line and "32000×32000×32000" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.nii.gz"]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended first: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _labels(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("scene") / "s.tif", 640, 704, border=False)[0]


@pytest.fixture(scope="module")
def reference(big_scene: Path, assets: Assets, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The uninterrupted run's labels (in this process)."""
    out = tmp_path_factory.mktemp("reference")
    argv = ["tile", str(big_scene), "-m", str(assets.ckpt3), "-o", str(out), *TILE_ARGS]
    assert main(argv) == 0
    return _labels(out / "s_labels.tif")


@pytest.mark.slow
def test_concurrent_tile_runs_on_one_folder(
    tmp_path: Path, big_scene: Path, assets: Assets, reference, capsys
):
    """A second run on a folder in use is refused at once; the first finishes exactly as if alone."""
    out = tmp_path / "out"
    first = subprocess.Popen(
        _cli("tile", str(big_scene), "-m", str(assets.ckpt3), "-o", str(out), *TILE_ARGS),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        _wait_for(out / LOCK_NAME, first)
        other = ["tile", str(big_scene), "-m", str(assets.ckpt3), "-o", str(out), *TILE_ARGS, "--tile", "128"]
        code, _, err = run_main(other, capsys)
        assert code == 2 and "Traceback" not in err
        (line,) = err.strip().splitlines()
        assert "in use by another tile run" in line and f"pid {first.pid}" in line
    finally:
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    np.testing.assert_array_equal(_labels(out / "s_labels.tif"), reference)
    assert not (out / LOCK_NAME).exists()
    code, stdout, err = run_main(other, capsys)  # afterwards: other settings never blend into the map
    assert code == 1 and "other settings (tile 64 → 128)" in err
    np.testing.assert_array_equal(_labels(out / "s_labels.tif"), reference)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_tile_killed_at_a_random_point_then_rerun(
    seed: int, tmp_path: Path, big_scene: Path, assets: Assets, reference, capsys
) -> None:
    out = tmp_path / "out"
    argv = ["tile", str(big_scene), "-m", str(assets.ckpt3), "-o", str(out), *TILE_ARGS]
    proc = subprocess.Popen(_cli(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        _wait_for(out / LOCK_NAME, proc)
        time.sleep(random.Random(seed).uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=300)
    code, stdout, err = run_main(argv, capsys)  # the stale lock is taken over
    assert code == 0 and "Traceback" not in err, err
    assert any(s in stdout for s in ("1 done", "1 resumed", "1 skipped"))
    np.testing.assert_array_equal(_labels(out / "s_labels.tif"), reference)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("tile-run-")) == ["s_labels.tif"]


TRAIN_SET = [
    "train.epochs=2",
    "model.features=[4,8]",
    "model.depths=[1,1]",
    "train.optimizer=adam",
    "train.lr=0.005",
    "train.batch_size=2",
    "train.num_workers=0",
    "train.progress=false",
    "data.patch_size=32",
    "data.samples_per_image=4",
    "train.bn_stats_batches=2",
]


def _train(assets: Assets, out: Path, *extra: str) -> list[str]:
    cfg = ["train", str(assets.config), "--data-root", str(assets.rite), "--out", str(out), *extra]
    return _cli(*cfg, "--set", *TRAIN_SET)


def _losses(out: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["epoch"], r["loss"]) for r in records]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_killed_at_a_random_point_then_rerun(tmp_path: Path, assets: Assets) -> None:
    ref = subprocess.run(
        _train(assets, tmp_path / "ref"), capture_output=True, text=True, env=ENV, timeout=300
    )
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen(_train(assets, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        _wait_for(out / LOCK_NAME, proc)
        time.sleep(random.Random(3).uniform(0.0, 2.0))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=300)
    resume = ["--resume"] if (out / "last.pt").exists() else []  # killed before its first checkpoint: restart
    rerun = subprocess.run(_train(assets, out, *resume), capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stderr[-2000:]
    got, want = _losses(out), _losses(tmp_path / "ref")
    assert [e for e, _ in got] == [e for e, _ in want] == [1, 2]
    for (_, a), (_, b) in zip(got, want):
        assert a == pytest.approx(b, rel=1e-5)
    assert not (out / LOCK_NAME).exists()
