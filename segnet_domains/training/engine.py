"""The one training loop every pipeline shares.

:func:`train` takes a run config (:class:`~segnet_domains.training.config.RunConfig`,
or the mapping :func:`~segnet_domains.training.config.build_config` returns,
converted once) and does, for any registered
:class:`~segnet_domains.training.task.Task`: model, loss and optimizer
(:mod:`~segnet_domains.training.factories`), seeded epochs with a tqdm bar,
population BatchNorm statistics and validation on whole images/volumes
through :class:`~segnet_domains.inference.Segmenter`
(:mod:`~segnet_domains.training.validation`), the metrics log and the
checkpoints ``OUT/best.pt`` and ``OUT/last.pt`` with everything ``--resume``
needs (:mod:`~segnet_domains.training.state`), and DistributedDataParallel
under ``torchrun``.

The loop is ours, not MONAI's ``SupervisedTrainer`` (an ignite ``Engine``):
an epoch here is re-seeded from ``(seed, epoch)`` for exact resume, trains
on the frames the Segmenter pads to at inference, may stop after
``max_steps_per_epoch``, times data waits per step, and recomputes
BatchNorm statistics before validating; the ignite handlers would have to
re-create each of these, and ignite would be one more dependency.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from segnet_domains.adapters import crop, pad_to_multiple
from segnet_domains.devices import resolve_device, resolve_precision
from segnet_domains.errors import InputError
from segnet_domains.training.config import RunConfig, TrainSettings
from segnet_domains.training.distributed import Context, setup, teardown
from segnet_domains.training.factories import build_loss, build_model_from_config, build_optimizer
from segnet_domains.training.state import RunFolder, RunState, seed_epoch, seed_everything
from segnet_domains.training.task import Task, get_task
from segnet_domains.training.validation import score, validate


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        out: the run folder.
        best: path of ``best.pt``.
        last: path of ``last.pt``.
        epochs: epochs completed (in total, across resumes).
        history: the metrics log records of this and earlier runs.
    """

    out: Path
    best: Path
    last: Path
    epochs: int
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Parts:
    """What one run trains with."""

    task: Task
    meta: dict[str, Any]
    model: nn.Module
    device: torch.device
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer


def train(config: RunConfig | Mapping[str, Any], resume: bool = False) -> TrainResult:
    """Train the config's task; see the module docstring.

    Args:
        config: a :class:`RunConfig`, or the mapping from :func:`build_config` (checked and converted here).
        resume: continue from ``OUT/last.pt`` (weights, optimizer, epoch, RNG, best score).

    Returns:
        :class:`TrainResult` (on every rank; only rank 0 writes files).

    Raises:
        InputError: a bad config value, bad data (named), nothing to resume from.
    """
    run = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    ctx = setup(run.train.device)
    try:
        return _train(run, resume, ctx)
    finally:
        teardown(ctx)


def _train(run: RunConfig, resume: bool, ctx: Context) -> TrainResult:
    t = run.train
    seed_everything(t.seed, t.deterministic)
    parts = _build(run, ctx)
    folder = RunFolder(run.out, is_main=ctx.is_main)
    state = folder.start(parts.model, parts.optimizer, resume, parts.device)
    if resume and ctx.is_main:
        print(f"resuming from {folder.last} at epoch {state.epoch}/{t.epochs}", flush=True)
    dataset = parts.task.train_dataset()
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise InputError(run.data["root"], "no training samples found")
    net = ctx.wrap(parts.model)
    for epoch in range(state.epoch + 1, t.epochs + 1):
        record = _train_epoch(net, dataset, parts, t, epoch, ctx)
        if ctx.is_main and (epoch % t.val_every == 0 or epoch == t.epochs):
            _validate_epoch(parts, dataset, run, record, state, folder)
        if ctx.is_main:
            folder.end_epoch(parts.model, parts.optimizer, parts.meta, run, record, state)
            _print_epoch(record, t.epochs)
        ctx.barrier()
    return TrainResult(
        out=run.out, best=folder.best, last=folder.last, epochs=t.epochs, history=state.history
    )


def _build(run: RunConfig, ctx: Context) -> _Parts:
    """The task, its checkpoint metadata, the model on its device, the loss and the optimizer."""
    task = get_task(run.task)(run.to_dict())
    meta = dict(task.metadata())
    in_ch, k = int(meta.pop("in_channels")), int(meta.pop("out_channels"))
    meta.setdefault("class_names", None)
    model = build_model_from_config(run.model, in_ch, k)
    device = ctx.device if ctx.device is not None else resolve_device(run.train.device)
    model.to(device)
    loss_fn = build_loss(task, run.train, k).to(device)
    optimizer = build_optimizer(model.parameters(), run.train)
    return _Parts(task, meta, model, device, loss_fn, optimizer)


def _validate_epoch(
    parts: _Parts, dataset: Any, run: RunConfig, record: dict[str, Any], state: RunState, folder: RunFolder
) -> None:
    """Population BN statistics, validation into ``record``, and ``best.pt`` when the score improves."""
    t0 = time.perf_counter()
    t = run.train
    if t.bn_stats_batches > 0:  # population statistics for eval mode (SegNet)
        record["bn_stats_batches"] = _bn_stats(parts.model, dataset, t, record["epoch"], parts.device)
    report = validate(parts.task, parts.model, parts.meta, parts.device, t.val_precision)
    record["val"] = {k: report[k] for k in ("mean", "pooled", "miou", "per_class_mean", "n_cases")}
    record["val"]["cases"] = [{k: v for k, v in c.items() if k != "per_class"} for c in report["cases"]]
    record["val_seconds"] = round(time.perf_counter() - t0, 3)
    value = score(report, parts.task.best_metric, parts.task.best_mode)
    record["best"] = value > state.best_score or not report["n_cases"]  # nothing to score: latest
    if record["best"]:
        state.best_score = value
        folder.save(folder.best, parts.model, parts.meta, run, record)


# --------------------------------------------------------------------------- one epoch


@dataclass
class _Clock:
    """Wall time of an epoch: data waits and whole steps, measured from the end of the previous step."""

    start: float = field(default_factory=time.perf_counter)
    mark: float = field(default_factory=time.perf_counter)
    waits: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)

    def fetched(self) -> None:
        self.waits.append(time.perf_counter() - self.mark)

    def stepped(self) -> None:
        now = time.perf_counter()
        self.steps.append(now - self.mark)
        self.mark = now


def _train_epoch(
    net: nn.Module, dataset: Any, parts: _Parts, t: TrainSettings, epoch: int, ctx: Context
) -> dict[str, Any]:
    """One seeded pass over the training data; returns the epoch's log record (loss, throughput)."""
    loader = _loader(dataset, t, epoch, parts.device, ctx)
    dtype = training_dtype(parts.device, t.precision)
    total = len(loader) if not t.max_steps_per_epoch else min(len(loader), t.max_steps_per_epoch)
    net.train()
    show = ctx.is_main and t.progress
    bar = tqdm(total=total, desc=f"epoch {epoch}/{t.epochs}", unit="batch", leave=False, disable=not show)
    losses: list[float] = []
    samples, clock = 0, _Clock()
    for step, batch in enumerate(loader):
        if step >= total:
            break
        x, y, m = (_tensor(batch.get(key), parts.device) for key in ("image", "label", "mask"))
        clock.fetched()
        loss = parts.loss_fn(_forward(net, x.float(), dtype), y, m)
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parts.optimizer.step()
        losses.append(float(loss.detach()))
        samples += x.shape[0]
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        clock.stepped()
    bar.close()
    return _epoch_record(epoch, losses, samples, clock, parts.optimizer, ctx)


def _loader(dataset: Any, t: TrainSettings, epoch: int, device: torch.device, ctx: Context) -> DataLoader:
    """The epoch's DataLoader, shuffled from ``(seed, epoch)`` (a DistributedSampler under torchrun)."""
    g = seed_epoch(dataset, t.seed, epoch)
    sampler = None
    if ctx.world_size > 1:
        sampler = DistributedSampler(
            dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=t.seed
        )
        sampler.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=t.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=t.num_workers,
        generator=g,
        pin_memory=device.type == "cuda",
    )


def _tensor(value: Any, device: torch.device) -> torch.Tensor | None:
    """A batch item as a plain tensor on ``device`` (``None`` stays ``None``)."""
    if value is None:
        return None
    return torch.as_tensor(value).as_subclass(torch.Tensor).to(device, non_blocking=True)


def _epoch_record(
    epoch: int,
    losses: list[float],
    samples: int,
    clock: _Clock,
    optimizer: torch.optim.Optimizer,
    ctx: Context,
) -> dict[str, Any]:
    seconds = time.perf_counter() - clock.start
    mean_loss = float(np.mean(losses)) if losses else math.nan
    if ctx.world_size > 1:
        mean_loss = ctx.mean(mean_loss)
    wait = sum(clock.waits)
    return {
        "epoch": epoch,
        "loss": mean_loss,
        "lr": optimizer.param_groups[0]["lr"],
        "steps": len(losses),
        "samples": samples * ctx.world_size,
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples * ctx.world_size / max(seconds, 1e-9), 3),
        "data_wait_fraction": round(wait / max(seconds, 1e-9), 4),
        "step_seconds_median": round(float(np.median(clock.steps)), 4) if clock.steps else None,
        "data_wait_seconds_median": round(float(np.median(clock.waits)), 4) if clock.waits else None,
    }


def training_dtype(device: torch.device, precision: str) -> torch.dtype:
    """Autocast dtype of the forward: ``fp32``, ``bf16``, or ``auto`` (bf16 where a probe times it faster).

    fp16 is not offered: it would need loss scaling; bf16 does not.
    """
    precision = str(precision).lower()
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return resolve_precision(device, "auto", mode="train")
    return torch.float32


def _forward(net: nn.Module, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Logits (fp32) for ``x`` padded exactly as :class:`Segmenter` pads at inference, cropped back.

    Training on the same padded frames the inference path feeds keeps the
    two consistent (it matters when slices are not multiples of 32). With
    ``dtype=torch.bfloat16`` the forward pass runs under autocast.
    """
    xp, size = pad_to_multiple(x, _stride(net))
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        logits = net(xp)
    return crop(logits.float(), size)


def _stride(model: nn.Module) -> int:
    return 2 ** len(getattr(model, "module", model).encoder.stages)


# --------------------------------------------------------------------------- BatchNorm statistics


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace BatchNorm running statistics by population statistics over ``batches``.

    SegNet's inference statistics are computed over the training set after
    training (``compute_bn_statistics.py`` of the authors' Caffe release);
    the running averages of a short or fast-moving run lag far behind the
    weights and make eval-mode predictions collapse. Dropout stays off.

    Returns:
        The number of batches seen (0: the model has no BatchNorm).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    momenta = [bn.momentum for bn in bns]
    was_training = model.training
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
    model.eval()
    for bn in bns:
        bn.train()
    n = 0
    try:
        for x in batches:
            model(x)
            n += 1
    finally:
        for bn, mom in zip(bns, momenta):
            bn.momentum = mom
        model.train(was_training)
    return n


def _bn_stats(model: nn.Module, dataset: Any, t: TrainSettings, epoch: int, device: torch.device) -> int:
    """Population BN statistics over up to ``train.bn_stats_batches`` training batches (seeded)."""
    g = seed_epoch(dataset, t.seed + 7919, epoch)
    loader = DataLoader(
        dataset, batch_size=t.batch_size, shuffle=True, num_workers=t.num_workers, generator=g
    )

    def images() -> Iterable[torch.Tensor]:
        for i, batch in enumerate(loader):
            if i >= t.bn_stats_batches:
                return
            x = torch.as_tensor(batch["image"]).as_subclass(torch.Tensor).to(device).float()
            yield pad_to_multiple(x, _stride(model))[0]

    return recompute_bn_stats(model, images())


def _print_epoch(record: dict[str, Any], epochs: int) -> None:
    val = record.get("val", {}).get("mean") or {}
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record['loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in val.items() if v is not None]
    parts.append(f"{record['samples_per_s']:.1f} samples/s")
    print("  ".join(parts) + ("  (best)" if record.get("best") else ""), flush=True)
