"""What every ``benchmarks/bench_*.py`` shares: ``--device``/``--json``, synchronised timing, flushed lines.

* ``--device``: ``cpu`` (default), ``cuda[:N]``, or ``auto`` (CUDA when present, else CPU).
* Timings synchronise the device before and after (``torch.cuda.synchronize``),
  so an asynchronous GPU is timed for its work, not for queueing it.
* :class:`Report` prints each figure as one flushed line as soon as it is
  measured (a run cut short by a time-out still shows what it measured) and
  writes the JSON (``--json PATH``) after every figure; a benchmark that
  reports at its end calls :func:`finish` instead.

Importing it puts this checkout first on ``sys.path``: a benchmark run from
another worktree (an old commit timed beside the new one) measures that
worktree's ``segnet_domains``, not the copy installed in the environment.

A benchmark runs the package as its users do, with the OpenMP wait policy
that ``import segnet_domains`` sets before torch loads OpenMP
(``segnet_domains/_openmp.py``). A script that imported torch before this
module would time libgomp's spinning default instead, so it is started
again with the policy set (:func:`run_as_users_do`); a policy of your own
(``OMP_WAIT_POLICY=ACTIVE``) is kept. On a quiet 2-core VM the difference
is large for small models: the reduced SegNet 8…64 on a 360×480 frame took
28 ms with the package's policy and 23–25 ms spinning (AMD EPYC Zen 4).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

from segnet_domains import _openmp  # noqa: E402  (first: its wait policy applies when torch loads)


def run_as_users_do() -> None:
    """Start this process again if torch loaded OpenMP before the package set its wait policy.

    The new process (same interpreter, options and arguments) inherits the
    policy, which ``import segnet_domains`` has put in the environment by now,
    so libgomp reads it as it loads; there this is a no-op.
    """
    if _openmp.set_too_late():
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


run_as_users_do()

import torch  # noqa: E402

from segnet_domains.adapters import pad_to_multiple  # noqa: E402


def add_common_args(ap: argparse.ArgumentParser, device: str = "cpu") -> None:
    """Add ``--device`` and ``--json`` (if not there yet) to a benchmark's parser."""
    ap.add_argument(
        "--device", default=device, help="cpu (default), cuda[:N], or auto (CUDA when present, else CPU)"
    )
    if not any("--json" in a.option_strings for a in ap._actions):
        ap.add_argument("--json", help="also write the figures to this file (rewritten after each figure)")


def pick_device(name: str) -> torch.device:
    """``auto`` → ``cuda`` when present, else ``cpu``; anything else as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available here")
    return dev


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn: Callable[[], Any], device: torch.device | str) -> float:
    """Seconds of ``fn()``, the device synchronised before and after."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def alternate(
    fns: dict[str, Callable[[], Any]], device: torch.device | str, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of each callable, run in alternation (load hits all alike) after ``warmup`` runs each."""
    for fn in fns.values():
        for _ in range(warmup):
            timed(fn, device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, device))
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def machine(device: torch.device) -> dict[str, Any]:
    """What ran the benchmark: device name, torch, threads, CPUs, load."""
    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "openmp_passive_waiting": _openmp.passive_waiting(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class Report:
    """Figures printed line by line (flushed) and kept for ``--json``, rewritten after each one."""

    def __init__(self, json_path: str | None, **header: Any) -> None:
        self.path = Path(json_path) if json_path else None
        self.data: dict[str, Any] = dict(header)
        print(" ".join(f"{k}={v}" for k, v in header.items()), flush=True)
        self._save()

    def add(self, name: str, line: str | None = None, **figures: Any) -> dict[str, Any]:
        """Record ``figures`` under ``name`` and print ``line`` (default: the figures)."""
        self.data[name] = figures
        print(f"{name}: {line or json.dumps(figures)}", flush=True)
        self._save()
        return figures

    def _save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps(self.data, indent=2) + "\n")


def finish(args: argparse.Namespace, results: Any, load_before: float | None = None) -> Any:
    """End a run: a note when the machine was loaded, ``results`` written to ``--json``; returns ``results``.

    Args:
        args: the parsed arguments (``args.json``: where to write, if set).
        results: the figures (anything JSON can hold).
        load_before: the 1-minute load average when measuring began (the note shows it beside the load now).
    """
    loads = [os.getloadavg()[0]] if load_before is None else [load_before, os.getloadavg()[0]]
    cpus = os.cpu_count() or 1
    if max(loads) > 0.75 * cpus:
        shown = " → ".join(f"{x:.1f}" for x in loads)
        print(f"  NOTE: the machine was loaded (1-min load average {shown} on {cpus} CPUs): absolute times "
              "are inflated; ratios of runs made in alternation less so", flush=True)  # fmt: skip
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


def prepared(seg: Any, x: torch.Tensor) -> torch.Tensor:
    """``x`` padded, on the Segmenter's device, in the backend's dtype and layout: the network's own input."""
    x, _ = pad_to_multiple(x.to(seg.device), seg.multiple, seg.backend.input_dtype)
    return x.contiguous(memory_format=torch.channels_last) if seg.device.type in ("cpu", "cuda") else x


def network(seg: Any, *batches: torch.Tensor) -> Callable[[], Any]:
    """The raw baseline: the Segmenter's network alone (its autocast included) over prepared batches."""

    def run() -> Any:
        with torch.inference_mode():
            for x in batches:
                out = seg.backend(x)
        return out

    return run
