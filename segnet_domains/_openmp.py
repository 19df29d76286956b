"""OpenMP threads that wait for work sleep instead of spinning: imported before torch, on purpose.

torch's CPU build runs its thread pool on GNU OpenMP (``libgomp``), whose idle
threads spin for a while before they sleep. On a machine shared with other jobs
(Dask workers, napari beside a training run, a test suite) a spinning thread
takes the core that the thread holding the work needs, and every parallel
region waits for it: the demo's training step ran 0.83–0.90 s with the default
and 0.51–0.55 s with ``OMP_WAIT_POLICY=PASSIVE`` beside one busy process on a
2-core AMD EPYC, and the same 0.29–0.30 s either way on the quiet machine
(``benchmarks/bench_shared_cpu.py``).

``libgomp`` reads the variable once, when torch loads it, so this module sets
it as a default (``os.environ.setdefault``: a user's own ``OMP_WAIT_POLICY``
wins) and ``segnet_domains/__init__.py`` imports it before anything imports
torch. Child processes (DataLoader workers, Dask workers, ``torchrun``) inherit
it. Where the user imported torch before ``segnet_domains``, it has no effect
on that process; :func:`passive_waiting` says whether it applies.
"""

from __future__ import annotations

import os
import sys

#: The variable and the value this package sets when the user has not.
WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")

#: Set here after torch had loaded OpenMP with its own default: too late for this process.
_too_late = WAIT_POLICY[0] not in os.environ and "torch" in sys.modules
os.environ.setdefault(*WAIT_POLICY)


def set_too_late() -> bool:
    """Whether this module set the policy after torch had loaded OpenMP: then only child processes get it."""
    return _too_late


def passive_waiting() -> bool:
    """Whether this process's OpenMP threads sleep when idle (the policy was PASSIVE when torch loaded)."""
    return not _too_late and os.environ.get(WAIT_POLICY[0], "").upper() == WAIT_POLICY[1]
