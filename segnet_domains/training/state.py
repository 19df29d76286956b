"""A run's state: seeding and RNG, the run folder, resume, checkpoints and the metrics log.

Epoch ``e`` of a run depends only on ``(train.seed, e)`` (:func:`seed_epoch`),
and ``OUT/last.pt`` holds the weights, the optimizer, the epoch, the best
score and the RNG state, so ``--resume`` continues exactly at an epoch
boundary. Only rank 0 writes (the engine checks ``ctx.is_main``).

Files of a run folder (:data:`RUN_FILES`): ``best.pt`` (a plain model for
front ends), ``last.pt`` (with training state), ``metrics.jsonl`` (one
record per epoch, rewritten atomically).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable
from torch import nn

from segnet_domains.checkpoint import load_checkpoint, save_checkpoint
from segnet_domains.errors import CheckpointError, InputError
from segnet_domains.io.atomic import atomic_output
from segnet_domains.io.safety import FolderOutput, holds_only
from segnet_domains.training.config import RunConfig

#: What a training run writes into its folder (anything else makes the folder "not ours").
RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl", "metrics.csv")


def run_output(out: str | Path, resume: bool = False) -> FolderOutput:
    """A run folder as an output, for :func:`~segnet_domains.io.safety.check_outputs`.

    A new or empty folder is fine; one holding only an earlier run's files is
    continued with ``resume`` or replaced with ``force``; anything else is refused.
    """
    return FolderOutput(
        out, "training run", "--out", ours=holds_only(RUN_FILES), exists="resume" if resume else "force"
    )


# --------------------------------------------------------------------------- seeding and RNG


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (MONAI's ``set_determinism`` does the same plus cudnn flags)."""
    from monai.utils import set_determinism

    set_determinism(seed=seed, use_deterministic_algorithms=None)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def seed_epoch(dataset: Any, seed: int, epoch: int) -> torch.Generator:
    """Make epoch ``epoch`` depend only on (seed, epoch): exact resume at epoch boundaries.

    Returns:
        The generator for the epoch's DataLoader shuffling.
    """
    s = seed * 1000 + epoch
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
    transform = getattr(dataset, "transform", None)
    if isinstance(transform, Randomizable):
        transform.set_random_state(seed=s % 2**32)
    g = torch.Generator()
    g.manual_seed(s)
    return g


def rng_state() -> dict[str, Any]:
    """torch, NumPy and Python RNG states, as tensors and lists a checkpoint can hold."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n[0], n[1].cpu().numpy().astype(np.uint32), int(n[2]), int(n[3]), float(n[4])))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


# --------------------------------------------------------------------------- the run folder


@dataclass
class RunState:
    """Where a run stands.

    Attributes:
        epoch: the last epoch completed (0: none).
        best_score: the best validation score so far (higher is better; ``-inf``: none).
        history: the metrics log records so far (earlier runs' too when resumed).
    """

    epoch: int = 0
    best_score: float = -math.inf
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RunFolder:
    """The files of one run under ``out``; only rank 0 calls the writing methods.

    Args:
        out: the run folder.
        is_main: this process writes (rank 0).
    """

    out: Path
    is_main: bool = True

    @property
    def best(self) -> Path:
        return self.out / "best.pt"

    @property
    def last(self) -> Path:
        return self.out / "last.pt"

    @property
    def log(self) -> Path:
        return self.out / "metrics.jsonl"

    def start(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, resume: bool, device: torch.device
    ) -> RunState:
        """A fresh run (empty log), or the state of ``last.pt`` loaded into ``model`` and ``optimizer``.

        Raises:
            InputError: ``resume`` without a ``last.pt``.
            CheckpointError: a ``last.pt`` without training state or with other weights.
        """
        if not resume:
            if self.is_main:
                self.out.mkdir(parents=True, exist_ok=True)
                self.log.unlink(missing_ok=True)
            return RunState()
        if not self.last.is_file():
            raise InputError(self.last, "nothing to resume from (no last.pt in the output folder)")
        ckpt = load_checkpoint(self.last, map_location=device)
        saved = ckpt.state or {}
        if "optimizer" not in saved or "epoch" not in saved:
            raise CheckpointError(self.last, "has no training state to resume from")
        try:
            model.load_state_dict(ckpt.model.state_dict())
        except RuntimeError:
            raise CheckpointError(self.last, "weights do not match this config's model") from None
        optimizer.load_state_dict(saved["optimizer"])
        best = saved.get("best_score")
        state = RunState(epoch=int(saved["epoch"]), best_score=-math.inf if best is None else float(best))
        set_rng_state(saved["rng"])
        state.history = read_log(self.log, upto_epoch=state.epoch)
        if self.is_main:  # drop records of the epoch that was killed before its checkpoint
            write_log(self.log, state.history)
        return state

    def save(
        self,
        path: Path,
        model: nn.Module,
        meta: dict[str, Any],
        run: RunConfig,
        record: dict[str, Any],
        state: dict[str, Any] | None = None,
    ) -> None:
        """A checkpoint with the run's config and the epoch's metrics as provenance."""
        provenance = {
            "task": run.task,
            "config": run.to_dict(),
            "epoch": record["epoch"],
            "metrics": {k: v for k, v in record.items() if k != "val"}
            | {"val": record.get("val", {}).get("mean")},
        }
        save_checkpoint(path, getattr(model, "module", model), state=state, provenance=provenance, **meta)

    def end_epoch(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        meta: dict[str, Any],
        run: RunConfig,
        record: dict[str, Any],
        state: RunState,
    ) -> None:
        """Log the epoch, write ``last.pt`` (resumable) and, before any validation, ``best.pt``."""
        state.epoch = record["epoch"]
        state.history.append(record)
        write_log(self.log, state.history)
        saved = {
            "optimizer": optimizer.state_dict(),
            "epoch": state.epoch,
            "best_score": state.best_score if math.isfinite(state.best_score) else None,
            "rng": rng_state(),
        }
        self.save(self.last, model, meta, run, record, saved)
        if not self.best.exists():  # no validation yet: the latest weights are the best we have
            self.save(self.best, model, meta, run, record)


def read_log(path: Path, upto_epoch: int | None = None) -> list[dict[str, Any]]:
    """The records of a metrics log (up to ``upto_epoch``), ``[]`` when there is none."""
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if upto_epoch is not None:
        records = [r for r in records if r.get("epoch", 0) <= upto_epoch]
    return records


def write_log(path: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite the metrics log atomically (one JSON record a line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
