"""Session fixtures built once per test run, also when pytest-xdist runs the suite in several workers.

``make test`` runs the suite in one worker per core (``-n logical``). Each worker is its own process with its
own session fixtures, so a model trained for the session would be trained once per worker. The fixtures that
train call :func:`once_per_run` instead: the first worker to get there builds the artefact in a folder all
workers share (the parent of each worker's base temporary folder, as pytest-xdist's documentation
recommends), under a file lock; the others wait for it and load the same files. Without xdist it simply
builds in the session's temporary folder.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import torch
from filelock import FileLock

T = TypeVar("T")


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]) -> T:
    """``build(folder)``'s result, built once for the whole run (every xdist worker gets the same one).

    Args:
        tmp_path_factory: the session's factory.
        name: the artefact's folder name, unique per fixture.
        build: makes the artefact inside the folder it is given and returns something picklable
            (paths, numbers, dicts) that refers to it.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent / "shared"
    shared.mkdir(exist_ok=True)
    folder, result = shared / name, shared / f"{name}.pkl"
    with FileLock(str(shared / f"{name}.lock")):
        if not result.is_file():
            folder.mkdir()
            value = build(folder)
            result.write_bytes(pickle.dumps(value))
        return pickle.loads(result.read_bytes())


def share_cores_between_workers() -> None:
    """Give each xdist worker its share of the usable cores (torch threads, and OMP for subprocesses).

    Two workers on two cores each running two-thread PyTorch would oversubscribe the machine (many times
    slower, not twice). A thread count the user set (``OMP_NUM_THREADS``) is kept.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1 or "OMP_NUM_THREADS" in os.environ:
        return
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
