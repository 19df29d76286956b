"""A run killed mid-epoch resumes from last.pt and ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segnet_domains.training import build_config, train
from tests.training.conftest import CONFIGS, TINY_RITE

ROOT = Path(__file__).resolve().parents[2]
RUN = [*TINY_RITE, "train.epochs=3", "data.samples_per_image=6"]


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _command(rite_root: Path, out: Path, *extra: str) -> list[str]:
    """The pipeline script, as a user runs it; every run in a fresh process with the same thread count."""
    cmd = [sys.executable, str(ROOT / "pipelines" / "rite_vessels.py"), "--data-root", str(rite_root)]
    return [*cmd, "--out", str(out), *extra, "--set", *RUN]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}


@pytest.mark.numerics
@pytest.mark.timeout(240)
def test_kill_mid_epoch_then_resume_matches_uninterrupted(rite_root: Path, tmp_path: Path) -> None:
    subprocess.run(
        _command(rite_root, tmp_path / "ref"), cwd=ROOT, env=_env(), check=True, capture_output=True
    )

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _command(rite_root, out), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 180
        while not (out / "last.pt").exists():  # written atomically at the end of epoch 1
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # now inside epoch 2
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert [r["epoch"] for r in _log(out)] in ([1], [1, 2])

    resumed = subprocess.run(
        _command(rite_root, out, "--resume"), cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    got, want = _log(out), _log(tmp_path / "ref")
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want] == [1, 2, 3]
    for a, b in zip(got, want):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["val"]["mean"]["dice"] == pytest.approx(b["val"]["mean"]["dice"], rel=1e-5)


def test_resume_without_checkpoint_is_a_clear_error(rite_root: Path, tmp_path: Path) -> None:
    from segnet_domains.errors import InputError

    cfg = build_config(CONFIGS / "rite_vessels.yaml", RUN, data_root=rite_root, out=tmp_path / "none")
    with pytest.raises(InputError, match="nothing to resume from"):
        train(cfg, resume=True)
