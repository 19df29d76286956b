"""Thread counts follow the cores a process may use: affinity, cgroup v1/v2 quotas, Dask workers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from segnet_domains import runtime
from segnet_domains.runtime import affinity_cores, cgroup_cpu_limit, configure_threads, usable_cores


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_cgroup_v2_quota_smallest_along_the_ancestry(tmp_path: Path) -> None:
    proc = tmp_path / "proc_self_cgroup"
    _write(proc, "0::/kubepods.slice/pod1/container")
    root = tmp_path / "cgroup"
    _write(root / "cpu.max", "max 100000")
    _write(root / "kubepods.slice/pod1/cpu.max", "250000 100000")  # the pod: 2.5 CPUs
    _write(root / "kubepods.slice/pod1/container/cpu.max", "max 100000")
    assert cgroup_cpu_limit(root, proc) == 2.5
    _write(root / "kubepods.slice/pod1/container/cpu.max", "50000 100000")  # the container: 0.5
    assert cgroup_cpu_limit(root, proc) == 0.5
    assert usable_cores(root, proc) == 1  # never below one


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    proc = tmp_path / "proc_self_cgroup"
    _write(proc, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/")
    cpu = tmp_path / "cgroup/cpu,cpuacct/docker/abc"
    _write(cpu / "cpu.cfs_quota_us", "-1")
    _write(cpu / "cpu.cfs_period_us", "100000")
    assert cgroup_cpu_limit(tmp_path / "cgroup", proc) is None  # -1: unlimited
    _write(cpu / "cpu.cfs_quota_us", "150000")
    assert cgroup_cpu_limit(tmp_path / "cgroup", proc) == 1.5
    assert usable_cores(tmp_path / "cgroup", proc) == 1  # rounded down: 1.5 CPUs keep one thread busy
    assert usable_cores(tmp_path / "nothing", tmp_path / "missing") == affinity_cores()


def test_this_machines_cgroup_files_parse() -> None:
    """The real /sys/fs/cgroup and /proc/self/cgroup of wherever the suite runs."""
    limit = cgroup_cpu_limit()
    assert limit is None or limit > 0
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


AFFINITY_CHILD = """
import importlib.util, json, os, sys
import torch
spec = importlib.util.spec_from_file_location("runtime", sys.argv[1])  # the module alone: a fast start
runtime = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runtime)
before = torch.get_num_threads()
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # the process is pinned to one CPU after start
pinned = runtime.configure_threads()
torch.set_num_threads(3)   # then the user's own choice
print(json.dumps({"before": before, "usable": runtime.usable_cores(), "pinned": pinned,
                  "user": runtime.configure_threads(), "after": torch.get_num_threads()}))
"""


def _child(**env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in runtime.THREAD_ENV}
    environ.update(env)
    out = subprocess.run(
        [sys.executable, "-c", AFFINITY_CHILD, runtime.__file__],
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs at least 2 CPUs to pin to fewer")
def test_affinity_lowers_threads_but_user_choices_stay() -> None:
    free = _child()
    assert free["before"] >= 2 and free["usable"] == 1 and free["pinned"] == 1  # pinned: one thread
    assert free["user"] == 3 and free["after"] == 3  # torch.set_num_threads(3) by the user: kept
    env = _child(OMP_NUM_THREADS="2")  # the environment's choice: kept when pinned
    assert env["before"] == 2 and env["pinned"] == 2


def test_explicit_count_wins_and_sticks(monkeypatch: pytest.MonkeyPatch) -> None:
    threads = torch.get_num_threads()
    monkeypatch.setattr(runtime, "_explicit", False)
    monkeypatch.setattr(runtime, "_configured", None)
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert configure_threads() == 1  # later automatic calls keep the explicit count
    finally:
        torch.set_num_threads(threads)


def _share_in_worker() -> tuple[int, int]:
    from segnet_domains.runtime import dask_worker_share

    return runtime.usable_cores(), dask_worker_share(8)


def test_dask_workers_split_the_host() -> None:
    """Two workers on this host: each gets half the cores (8 → 4); outside a worker: no share."""
    distributed = pytest.importorskip("distributed")
    assert runtime.dask_worker_share(8) is None
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        usable, share = client.submit(_share_in_worker, pure=False).result(timeout=60)
    assert share == 4
    assert usable == max(1, runtime.affinity_cores() // 2)


needs_openmp = pytest.mark.skipif(runtime.openmp_runtime() is None, reason="torch's threads are not OpenMP's")


@pytest.fixture
def two_threads() -> Iterator[None]:
    """torch on two threads for the test (the suite gives each worker its share of the cores, often one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@needs_openmp
@pytest.mark.usefixtures("two_threads")
def test_small_host_work_runs_on_this_thread_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the probed size the calling thread works alone, and only it; its count is restored after."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(runtime, "_wake_s", 100e-6)  # a slow wake: up to SMALL_WORK_MAX_ELEMENTS are small
    seen: list[int] = []
    with runtime.one_thread_if_small(360 * 480 * 3):
        assert torch.get_num_threads() == 1
        other = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        other.start()
        other.join()
        x = torch.rand(3, 360, 480)
        assert torch.equal(x.mul(2.0).add_(1.0), x * 2.0 + 1.0)
    assert torch.get_num_threads() == threads and seen == [threads]  # another thread kept the pool
    with runtime.one_thread_if_small(runtime.SMALL_WORK_MAX_ELEMENTS + 1):  # large: all threads
        assert torch.get_num_threads() == threads
    with pytest.raises(ValueError), runtime.one_thread_if_small(10):
        raise ValueError("restored on the way out")
    assert torch.get_num_threads() == threads


@needs_openmp
@pytest.mark.usefixtures("two_threads")
def test_spinning_threads_keep_small_work_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wake that costs nothing (threads that spin) makes nothing small."""
    monkeypatch.setattr(runtime, "_wake_s", 0.0)
    with runtime.one_thread_if_small(10):
        assert torch.get_num_threads() == 2


def test_the_wake_probe_runs_once() -> None:
    first = runtime.wake_seconds()
    assert first >= 0.0 and runtime.wake_seconds() == first


@needs_openmp
@pytest.mark.usefixtures("two_threads")
def test_a_frame_prepared_on_one_thread_gives_the_same_probabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    from segnet_domains import Segmenter, SegNet

    torch.manual_seed(0)
    seg = Segmenter(SegNet(3, 4, features=[8, 16, 16, 16, 16]).eval(), device="cpu")
    frame = np.random.default_rng(0).integers(0, 256, (45, 60, 3), dtype=np.uint8)  # padded to 64 rows
    monkeypatch.setattr(runtime, "_wake_s", 0.0)
    shared = seg.predict_proba(frame)
    monkeypatch.setattr(runtime, "_wake_s", 100e-6)
    counts: list[int] = []
    real = runtime.one_thread_if_small

    @contextlib.contextmanager
    def watched(elements: int):  # the real one, and what torch saw inside it
        with real(elements):
            counts.append(torch.get_num_threads())
            yield

    monkeypatch.setattr("segnet_domains.inference.one_thread_if_small", watched)
    np.testing.assert_array_equal(seg.predict_proba(frame), shared)
    assert counts == [1, 1]  # the image's normalisation, then its padding
    np.testing.assert_array_equal(seg.predict_proba(torch.from_numpy(frame)), shared)  # a tensor too
    assert counts == [1, 1, 1, 1]
