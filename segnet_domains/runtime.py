"""How many cores this process may use, and torch's thread count set to match.

Jobs that share a machine (Dask workers, napari beside a training run, a
container with a CPU quota) must not each start one thread per core of the
machine: oversubscribed threads run several times slower than the cores they
have. :func:`usable_cores` takes the smallest of

* the CPU affinity mask (``os.sched_getaffinity``: ``taskset``, cpusets, Slurm);
* the cgroup CPU quota — v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
  ``cpu.cfs_period_us`` — of this process's cgroup and its ancestors
  (Docker ``--cpus``, Kubernetes limits), rounded down, at least 1;
* inside a Dask worker, that machine's share for this worker: the cores
  divided by the number of workers on the same host (the scheduler's list),
  or the worker's own ``nthreads`` when the scheduler cannot say.

:func:`configure_threads` applies it to ``torch.set_num_threads``, unless
the user chose: ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` in the environment,
or a ``torch.set_num_threads`` call that left torch away from its own default.

:func:`one_thread_if_small` runs small host-side work (preparing one image)
on the calling thread alone where waking the pool's sleeping threads costs
more than sharing the work saves.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

#: Environment variables through which a user sets the thread count (torch reads them at start-up).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: torch's own choice at start-up: OpenMP's default, one thread per CPU of the affinity mask.
_TORCH_DEFAULT = torch.get_num_threads()
_configured: int | None = None  # what configure_threads last set
_explicit = False  # … and whether a caller gave that count explicitly

#: Host-side elements below which :func:`one_thread_if_small` runs work on one thread, per second that
#: waking the pool's sleeping threads adds to a parallel region. From the crossover measured for preparing
#: an RGB image (normalise, pad, bf16) on a 2-core AMD EPYC Zen 4 VM with passive waiting, where a wake
#: took about 67 µs: one thread was faster up to 720×960 (4.4 against 5.2 ms), two from 1080×1920.
SMALL_WORK_ELEMENTS_PER_WAKE_SECOND = 6e10
#: … and never above this many elements, whatever the probe measured (a busy moment can inflate it).
SMALL_WORK_MAX_ELEMENTS = 1 << 21
_wake_s: float | None = None  # wake_seconds(), once measured


def affinity_cores() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cgroup_paths(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """This process's (v2 path, v1 ``cpu`` controller path) from ``/proc/self/cgroup``."""
    v2 = v1 = None
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _ancestors(base: Path, path: str) -> list[Path]:
    """``base/path`` and each parent up to ``base`` (a limit on any ancestor applies)."""
    rel = Path(path.lstrip("/"))
    out = [base / rel]
    out += [base / p for p in rel.parents]
    return list(dict.fromkeys(out))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(
    root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup"
) -> float | None:
    """CPUs granted by this process's cgroup quota (smallest along its ancestry), ``None`` when unlimited.

    Args:
        root: where the cgroup file systems are mounted.
        proc_cgroup: the process's cgroup membership file.
    """
    root = Path(root)
    v2, v1 = _cgroup_paths(Path(proc_cgroup))
    limits: list[float] = []
    if v2 is not None:
        for d in _ancestors(root, v2):
            text = _read(d / "cpu.max")
            if text:
                quota, _, period = text.partition(" ")
                if quota != "max" and period:
                    limits.append(int(quota) / int(period))
    if v1 is not None:
        for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
            if not (root / mount).is_dir():
                continue
            for d in _ancestors(root / mount, v1):
                quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
                if quota and period and int(quota) > 0 and int(period) > 0:
                    limits.append(int(quota) / int(period))
            break
    return min(limits) if limits else None


def dask_worker_share(cores: int) -> int | None:
    """This Dask worker's share of ``cores``, or ``None`` outside a Dask worker.

    The cores are divided among the workers the scheduler knows on this
    worker's host; when that list is unavailable, the worker's ``nthreads``.
    """
    if "distributed" not in sys.modules:  # not imported: certainly not in a worker
        return None
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:
        return None
    nthreads = max(1, int(getattr(worker, "nthreads", 1) or 1))
    try:
        from distributed.comm.addressing import get_address_host

        host = get_address_host(worker.address)
        workers = worker.client.scheduler_info().get("workers", {})
        here = sum(1 for addr in workers if get_address_host(addr) == host)
    except Exception:  # noqa: BLE001 - no client or scheduler info: fall back to the worker's own setting
        here = 0
    if here:
        return max(1, cores // here)
    return min(cores, nthreads)


def usable_cores(root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup") -> int:
    """Cores this process may keep busy: affinity, cgroup quota and Dask share, the smallest (≥ 1).

    Args:
        root: where the cgroup file systems are mounted (a parameter for tests).
        proc_cgroup: the process's cgroup membership file.
    """
    cores = affinity_cores()
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    share = dask_worker_share(cores)
    return max(1, share if share is not None else cores)


def user_chose_threads() -> bool:
    """True when the user set torch's thread count (environment, or ``torch.set_num_threads``)."""
    if any(os.environ.get(name) for name in THREAD_ENV):
        return True
    current = torch.get_num_threads()
    return current not in (_TORCH_DEFAULT, _configured)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to the cores this process may use; return the count in force.

    Args:
        threads: an explicit count (wins over everything, and later calls without
            one keep it); ``None``: :func:`usable_cores`, unless the user chose
            (see :func:`user_chose_threads`), which is left alone.
    """
    global _configured, _explicit
    if threads is None:
        if user_chose_threads() or _explicit:
            return torch.get_num_threads()
        threads = usable_cores()
    else:
        _explicit = True
    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    _configured = threads
    return threads


@functools.cache
def openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime torch's thread pool runs on (GNU, LLVM or Intel), loaded here; else ``None``.

    Found among the process's mapped libraries (Linux), so that it is the
    copy torch loaded (the CPU wheels bundle their own ``libgomp``), not
    another on the library path.
    """
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:  # not Linux
        return None
    for path in dict.fromkeys(line.split()[-1] for line in maps if "/" in line):
        if Path(path).name.startswith(("libgomp", "libomp", "libiomp5")):
            with contextlib.suppress(OSError):
                return ctypes.CDLL(path)
    return None


def wake_seconds() -> float:
    """What waking the pool's idle threads adds to a parallel region, in seconds; probed once per process.

    The package's passive OpenMP policy lets idle threads sleep, and the next
    parallel region waits for the kernel to wake them. Timed as a fill of
    65536 floats (a parallel region with a few µs of work) on all threads
    and on one, alternating, 25 each: the difference of the medians, at
    least 0. 27–73 µs in a 2-core Firecracker VM (six processes), where
    spinning threads make it 0; a few µs on a bare machine. 0 without an
    OpenMP runtime.
    """
    global _wake_s
    lib = openmp_runtime()
    if _wake_s is None:
        threads = lib.omp_get_max_threads() if lib is not None else 1
        if threads <= 1:
            return 0.0
        x = torch.empty(1 << 16)
        x.fill_(0.0)  # the pool's threads exist before anything is timed
        times: dict[int, list[float]] = {1: [], threads: []}
        for _ in range(25):
            for n in times:
                lib.omp_set_num_threads(n)
                t = time.perf_counter()
                x.fill_(1.0)
                times[n].append(time.perf_counter() - t)
        lib.omp_set_num_threads(threads)
        _wake_s = max(0.0, statistics.median(times[threads]) - statistics.median(times[1]))
    return _wake_s


@contextlib.contextmanager
def one_thread_if_small(elements: int) -> Iterator[None]:
    """Run the host-side work inside on the calling thread alone when ``elements`` is small for this machine.

    Small is below :func:`wake_seconds` × :data:`SMALL_WORK_ELEMENTS_PER_WAKE_SECOND`
    (at most :data:`SMALL_WORK_MAX_ELEMENTS`): each parallel region of that
    work would wait for a sleeping thread to wake. The thread count is set
    for the calling thread only, through the OpenMP runtime
    (``omp_set_num_threads``), and restored on the way out;
    ``torch.set_num_threads`` would be process-wide and clears oneDNN's
    cache of compiled kernels (the next forward pass took 38.0 against
    35.9 ms). Same numbers either way. A 360×480 RGB frame's preparation in
    ``Segmenter.predict_proba``, measured after a network pass: normalising
    2.56 → 1.82 ms, padding 0.44 → 0.26 ms; the whole call 35.4 → 33.9 ms
    against a 28.8 ms network (2-core AMD EPYC Zen 4 VM, passive waiting,
    medians of 28 alternations).
    """
    lib = openmp_runtime()
    threads = lib.omp_get_max_threads() if lib is not None else 1
    small = min(wake_seconds() * SMALL_WORK_ELEMENTS_PER_WAKE_SECOND, SMALL_WORK_MAX_ELEMENTS)
    if lib is None or threads <= 1 or elements > small:
        yield
        return
    lib.omp_set_num_threads(1)
    try:
        yield
    finally:
        lib.omp_set_num_threads(threads)
