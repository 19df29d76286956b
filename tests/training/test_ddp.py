"""DistributedDataParallel under torchrun: 2 CPU processes with gloo, rank-0 checkpoints and log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from segnet_domains import read_info
from tests.training.conftest import TINY_RITE

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_torchrun_two_cpu_processes(rite_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(ROOT / "pipelines" / "rite_vessels.py"), "--data-root", str(rite_root), "--out", str(out)]
    cmd += ["--set", *TINY_RITE, "train.epochs=2", "train.device=cpu"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: 2 epochs") == 2  # both ranks finish
    assert proc.stdout.count("epoch 2/2  loss") == 1  # only rank 0 reports
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    # the DistributedSampler splits 4 images over 2 ranks: together they see each once per epoch
    assert all(r["samples"] == 4 * 2 for r in records)
    assert read_info(out / "best.pt").domain == "fundus"
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]
