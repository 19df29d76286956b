"""The device scripts, tried on a CPU (``gpu_check.py --quick``, ``device_lease.sh``), and the harness."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = (
    "peak", "network_b1", "network_b4", "predict_proba", "predict_volume", "tile", "train",
    "normalize_volume", "normalize_scene",
)  # fmt: skip


@pytest.mark.slow
def test_gpu_check_quick_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: a modest load on a shared machine
    script = str(ROOT / "benchmarks/gpu_check.py")
    proc = subprocess.run(
        [sys.executable, script, "--device", "cpu", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[-1] == "done"
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["quick"] is True
    for name in SECTIONS:
        assert name in report and "error" not in report[name], report.get(name)
        assert any(line.startswith(f"{name}: ") for line in lines)  # printed line by line as measured
    ratios = [
        report["predict_proba"]["ratio"],
        report["predict_volume"]["ratio"],
        report["tile"]["fraction_of_raw"],
        report["train"]["ratio"],
    ]
    assert all(math.isfinite(r) and 0.05 < r < 20 for r in ratios), ratios
    assert report["tile"]["how"].startswith("tile_scene")  # rasterio is installed here: the real tiler
    assert report["network_b4"]["ms_per_frame"] > 0 and report["peak"]["tflops"] > 0
    for name in ("normalize_volume", "normalize_scene"):  # old and new, host and device: the same numbers
        assert report[name]["max_abs_diff"] == 0 and report[name]["max_abs_diff_device"] == 0
    assert "compile_b1" not in report  # --quick leaves torch.compile out unless asked


@pytest.mark.slow
def test_device_lease_script_runs_its_cpu_stage_quick(tmp_path: Path) -> None:
    """``benchmarks/device_lease.sh`` (a device lease's one command), tried on a CPU: the log and the figures.

    ``DEVICE_QUICK=1`` runs the AMX stage on any CPU with the reduced SegNet, under both oneDNN caps (a cap
    above what the CPU has is a no-op); the script skips the GPU stage itself where there is no CUDA.
    """
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "PYTHON": sys.executable,
        "DEVICE_QUICK": "1",
        "OMP_NUM_THREADS": "1",
    }
    script = str(ROOT / "benchmarks/device_lease.sh")
    proc = subprocess.run(
        ["bash", script, "gpu", "cpu"], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    log = (tmp_path / "device.log").read_text()
    assert "cpu flag amx_bf16: " in log and log.rstrip().endswith("device_lease: done")
    assert "== gpu: " in log and "== tests" not in log  # only the stages named
    for isa in ("AVX512_CORE_AMX", "AVX512_CORE_BF16"):
        for kind in ("paper", "reduced"):
            report = json.loads((tmp_path / f"cpu-{kind}-{isa}.json").read_text())
            assert report["device"] == "cpu" and report["features"] == [8, 16, 32, 64, 64]
            assert 0.5 < report["end_to_end_over_network"] < 5, report


def test_harness_measures_its_own_checkout(tmp_path: Path) -> None:
    """A benchmark run from another worktree imports that worktree's package, not the installed one.

    The copy's ``segnet_domains`` here is a marker package; without the
    harness's path entry the installed (editable) checkout would be imported.
    """
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "harness.py").write_text((ROOT / "benchmarks/harness.py").read_text())
    pkg = tmp_path / "segnet_domains"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_openmp.py").write_text("def set_too_late():\n    return False\n")
    (pkg / "adapters.py").write_text("def pad_to_multiple(x, multiple):\n    return x, x.shape[-2:]\n")
    code = (
        f"import sys; sys.path.insert(0, {str(bench)!r}); "
        "import harness, segnet_domains; print(segnet_domains.__file__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Path(proc.stdout.strip()) == pkg / "__init__.py"


@pytest.mark.parametrize("policy", [None, "ACTIVE"])
def test_a_benchmark_importing_torch_first_runs_with_the_packages_openmp_policy(policy: str | None) -> None:
    """torch loaded first would keep libgomp's spinning default: the harness starts the process again.

    The script prints its process id before and after importing the harness:
    the second line comes from the process started again, with the policy in
    force. A user's own policy is kept, and nothing is started again.
    """
    code = (
        "import os, sys, torch; print(os.getpid(), flush=True); "
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import harness; "
        "from segnet_domains._openmp import passive_waiting; "
        "print(os.getpid(), os.environ['OMP_WAIT_POLICY'], passive_waiting())"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env |= {"OMP_WAIT_POLICY": policy} if policy else {}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.split("\n")[:-1]
    if policy is None:  # the first run's pid, then the second run's pid and its (passive) policy
        assert len(lines) == 3 and lines[0] == lines[1].split()[0], lines  # exec keeps the pid
        assert lines[2].split()[1:] == ["PASSIVE", "True"]
    else:
        assert len(lines) == 2 and lines[1].split()[1:] == ["ACTIVE", "False"], lines
