"""The one training loop every pipeline shares.

:func:`train` takes a merged config (see :func:`build_config`) and does, for
any registered :class:`~segnet_domains.training.task.Task`: model building,
loss, optimizer, seeded epochs with a tqdm bar, validation on whole
images/volumes through :class:`~segnet_domains.inference.Segmenter`, the
metrics log ``OUT/metrics.jsonl``, checkpoints ``OUT/best.pt`` and
``OUT/last.pt`` (with optimizer, epoch and RNG state for ``--resume``) and
DistributedDataParallel under ``torchrun``.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader
from monai.transforms import Randomizable
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from segnet_domains.adapters import crop, pad_to_multiple
from segnet_domains.checkpoint import load_checkpoint, make_info, save_checkpoint
from segnet_domains.config import apply_overrides, merge, read_yaml
from segnet_domains.devices import resolve_device, resolve_precision
from segnet_domains.errors import CheckpointError, InputError
from segnet_domains.inference import Segmenter
from segnet_domains.io.safety import FolderOutput, holds_only
from segnet_domains.metrics import evaluate_case, summarize
from segnet_domains.model import build_model
from segnet_domains.training import distributed as dist
from segnet_domains.training.loss import SegmentationLoss, median_frequency_weights
from segnet_domains.training.task import Task, get_task

log = logging.getLogger(__name__)

#: Every config key the engine knows, with its default. Tasks add their own ``data.*`` keys.
DEFAULTS: dict[str, Any] = {
    "task": None,
    "out": None,
    "data": {"root": None, "skip_corrupt": False},
    "model": {
        "architecture": "SegNet",
        "features": [64, 128, 256, 512, 512],
        "dropout": 0.0,
        "depths": [2, 2, 3, 3, 3],
        "head": "segmentation",
    },
    "train": {
        "epochs": 50,
        "batch_size": 8,
        "optimizer": "sgd",
        "lr": 0.001,
        "momentum": 0.9,
        "weight_decay": 0.0005,
        "class_weights": "none",
        "lambda_dice": 1.0,
        "lambda_ce": 1.0,
        "seed": 0,
        "deterministic": True,
        "num_workers": 2,
        "device": "auto",
        "val_every": 1,
        "precision": "fp32",
        "val_precision": "fp32",
        "bn_stats_batches": 50,
        "max_steps_per_epoch": None,
        "progress": True,
    },
}


def build_config(
    path: str | Path | None,
    overrides: Iterable[str] = (),
    data_root: str | Path | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Defaults (engine + task) ← YAML ← ``--set`` ← ``--data-root``/``--out``.

    The task named by ``task:`` (in the file or an override) contributes its
    ``data.*`` keys, so every other key is checked against a known list.

    Raises:
        InputError: missing/invalid file, unknown task or config key.
    """
    overrides = list(overrides)
    user = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "config"
    task_name = user.get("task")
    for text in overrides:
        key, _, value = text.partition("=")
        if key.strip() == "task":
            task_name = value.strip()
    task_cls = get_task(task_name, source)
    defaults = merge(DEFAULTS, {}, source)
    defaults["data"].update(task_cls.data_defaults)
    config = merge(defaults, user, source)
    apply_overrides(config, overrides)
    config["task"] = task_name
    if data_root is not None:
        config["data"]["root"] = str(data_root)
    if out is not None:
        config["out"] = str(out)
    if not config["out"]:
        config["out"] = str(Path("runs") / str(task_name))
    _check_train(config, source)
    return config


def _check_train(config: dict[str, Any], source: str) -> None:
    t = config["train"]
    if str(t["optimizer"]).lower() not in ("sgd", "adam"):
        raise InputError(source, f"train.optimizer must be sgd or adam, not {t['optimizer']!r}")
    weights = t["class_weights"]
    fixed = isinstance(weights, list) and all(isinstance(w, int | float) and w >= 0 for w in weights)
    if not fixed and str(weights).lower() not in ("none", "median_frequency"):
        raise InputError(
            source,
            f"train.class_weights must be none, median_frequency or a list of one weight per class, "
            f"not {weights!r}",
        )
    if str(t["precision"]).lower() not in ("fp32", "bf16", "auto"):
        raise InputError(source, f"train.precision must be fp32, bf16 or auto, not {t['precision']!r}")
    for key in ("epochs", "batch_size"):
        if not isinstance(t[key], int) or t[key] < 1:
            raise InputError(source, f"train.{key} must be a positive integer, not {t[key]!r}")
    lr = t["lr"]
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf:
        raise InputError(source, f"train.lr must be a positive number, got {lr!r}")
    if not isinstance(t["num_workers"], int) or not 0 <= t["num_workers"] <= 256:
        raise InputError(
            source, f"train.num_workers must be an integer in [0, 256], got {t['num_workers']!r}"
        )
    _check_model(config["model"], source)
    if not config["data"].get("root"):
        raise InputError(source, "data.root is not set (give --data-root DIR or data.root in the config)")


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


def _check_model(m: dict[str, Any], source: str) -> None:
    """Model widths and dropout in range before anything is built (an absurd width is never allocated)."""
    from segnet_domains.checkpoint import MAX_WIDTH

    features = m.get("features")
    widths = features if isinstance(features, list | tuple) else [features]
    if not widths or not all(
        isinstance(f, int) and not isinstance(f, bool) and 1 <= f <= MAX_WIDTH for f in widths
    ):
        raise InputError(source, f"model.features must be widths in [1, {MAX_WIDTH}], got {features!r}")
    dropout = m.get("dropout") or 0.0
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise InputError(source, f"model.dropout must be a number in [0, 1), got {dropout!r}")


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


# --------------------------------------------------------------------------- pieces


def build_model_from_config(model_cfg: dict[str, Any], in_channels: int, out_channels: int) -> nn.Module:
    """Instantiate ``model.architecture`` with the config's arguments it accepts."""
    from segnet_domains.model.segnet import ARCHITECTURES

    arch = model_cfg.get("architecture", "SegNet")
    if arch not in ARCHITECTURES:
        raise InputError(
            "model.architecture", f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})"
        )
    accepted = inspect.signature(ARCHITECTURES[arch]).parameters
    args = {k: v for k, v in model_cfg.items() if k in accepted and k != "architecture" and v is not None}
    try:
        return build_model(arch, {"in_channels": in_channels, "out_channels": out_channels, **args})
    except (TypeError, ValueError) as exc:
        raise InputError("model", f"cannot build {arch} from {args}: {exc}") from None


def build_optimizer(params: Iterable[nn.Parameter], train_cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD (the paper's lr 0.001, momentum 0.9) or Adam, from ``train.*``."""
    name = str(train_cfg["optimizer"]).lower()
    lr, wd = float(train_cfg["lr"]), float(train_cfg["weight_decay"] or 0.0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=float(train_cfg["momentum"]), weight_decay=wd)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (MONAI's ``set_determinism`` does the same plus cudnn flags)."""
    from monai.utils import set_determinism

    set_determinism(seed=seed, use_deterministic_algorithms=None)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def _seed_epoch(dataset: Any, seed: int, epoch: int) -> torch.Generator:
    """Make epoch ``epoch`` depend only on (seed, epoch): exact resume at epoch boundaries."""
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


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), float(n[4])))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def _read_log(path: Path, upto_epoch: int | None = None) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if upto_epoch is not None:
        records = [r for r in records if r.get("epoch", 0) <= upto_epoch]
    return records


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


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


# --------------------------------------------------------------------------- validation


def validate(
    task: Task,
    model: nn.Module,
    metadata: dict[str, Any],
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> dict[str, Any]:
    """Score ``model`` on the task's whole validation cases through the shared Segmenter.

    Returns:
        :func:`~segnet_domains.metrics.summarize`'s report plus
        ``"inference_only"``: names of cases without labels (predicted, not scored);
        or the task's own report when :meth:`Task.evaluate` gives one (counting).
    """
    info = make_info(_unwrap(model), **metadata)
    seg = Segmenter(_unwrap(model), device=device, info=info, precision=precision)
    custom = task.evaluate(seg)  # a regression task (counting) scores itself
    if custom is not None:
        return custom
    k = info.out_channels
    scored, unlabeled = [], []
    for case in task.val_cases():
        pred = task.predict(seg, case)
        if case.label is None:
            unlabeled.append(case.name)
            continue
        mask = case.mask
        if task.ignore_index is not None:
            keep = case.label != task.ignore_index
            mask = keep if mask is None else (mask.astype(bool) & keep)
        truth = (
            np.where(case.label == task.ignore_index, 0, case.label)
            if task.ignore_index is not None
            else case.label
        )
        scored.append(evaluate_case(pred, truth, k, mask=mask, name=case.name))
    report = summarize(scored, info.class_names, include_background=task.include_background)
    report["inference_only"] = unlabeled
    return report


def _score(report: dict[str, Any], metric: str, mode: str = "max") -> float:
    """The validation score, higher = better (an error metric with ``mode="min"`` is negated)."""
    value = report.get("miou") if metric == "miou" else report.get("mean", {}).get(metric)
    if value is None:
        return -math.inf
    return float(value) if mode == "max" else -float(value)


# --------------------------------------------------------------------------- the loop


def train(config: dict[str, Any], resume: bool = False) -> TrainResult:
    """Train the config's task; see the module docstring.

    Args:
        config: from :func:`build_config`.
        resume: continue from ``OUT/last.pt`` (weights, optimizer, epoch, RNG, best score).

    Returns:
        :class:`TrainResult` (on every rank; only rank 0 writes files).

    Raises:
        InputError: bad data (named), nothing to resume from.
    """
    ctx = dist.setup()
    try:
        return _train(config, resume, ctx)
    finally:
        dist.teardown(ctx)


def _train(config: dict[str, Any], resume: bool, ctx: dist.Context) -> TrainResult:
    tcfg = config["train"]
    out = Path(config["out"])
    last_path, best_path, log_path = out / "last.pt", out / "best.pt", out / "metrics.jsonl"
    seed = int(tcfg["seed"])
    seed_everything(seed, bool(tcfg["deterministic"]))

    task = get_task(config["task"])(config)
    meta = dict(task.metadata())
    in_ch, k = int(meta.pop("in_channels")), int(meta.pop("out_channels"))
    meta.setdefault("class_names", None)
    model = build_model_from_config(config["model"], in_ch, k)
    device = ctx.device if ctx.device is not None else resolve_device(tcfg["device"])
    model.to(device)

    weights = None
    if isinstance(tcfg["class_weights"], list):  # published weights (SegNet-Tutorial's CamVid)
        if len(tcfg["class_weights"]) != k:
            raise InputError("train.class_weights", f"{len(tcfg['class_weights'])} weights for {k} classes")
        weights = np.asarray(tcfg["class_weights"], np.float32)
    elif str(tcfg["class_weights"]).lower() == "median_frequency":
        weights = median_frequency_weights(task.train_labels(), k)
        log.info("median-frequency class weights: %s", np.round(weights, 3).tolist())
    loss_fn = task.loss(k, weights)  # a regression task (a density head) brings its own
    if loss_fn is None:
        loss_fn = SegmentationLoss(
            k,
            weight=weights,
            ignore_index=task.ignore_index,
            lambda_dice=float(tcfg["lambda_dice"]),
            lambda_ce=float(tcfg["lambda_ce"]),
        )
    loss_fn = loss_fn.to(device)
    optimizer = build_optimizer(model.parameters(), tcfg)

    start_epoch, best_score, history = 0, -math.inf, []
    if resume:
        if not last_path.is_file():
            raise InputError(last_path, "nothing to resume from (no last.pt in the output folder)")
        ckpt = load_checkpoint(last_path, map_location=device)
        state = ckpt.state or {}
        if "optimizer" not in state or "epoch" not in state:
            raise CheckpointError(last_path, "has no training state to resume from")
        try:
            model.load_state_dict(ckpt.model.state_dict())
        except RuntimeError:
            raise CheckpointError(last_path, "weights do not match this config's model") from None
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        saved_best = state.get("best_score")
        best_score = -math.inf if saved_best is None else float(saved_best)
        _set_rng_state(state["rng"])
        history = _read_log(log_path, upto_epoch=start_epoch)
        if ctx.is_main:  # drop records of the epoch that was killed before its checkpoint
            _write_log(log_path, history)
        if ctx.is_main:
            print(f"resuming from {last_path} at epoch {start_epoch}/{tcfg['epochs']}", flush=True)
    elif ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        log_path.unlink(missing_ok=True)

    dataset = task.train_dataset()
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise InputError(config["data"]["root"], "no training samples found")
    net = ctx.wrap(model)
    epochs = int(tcfg["epochs"])
    for epoch in range(start_epoch + 1, epochs + 1):
        record = _train_epoch(net, dataset, loss_fn, optimizer, tcfg, epoch, epochs, seed, device, ctx)
        if ctx.is_main and (epoch % int(tcfg["val_every"] or 1) == 0 or epoch == epochs):
            t0 = time.perf_counter()
            if int(tcfg["bn_stats_batches"] or 0) > 0:  # population statistics for eval mode (SegNet)
                record["bn_stats_batches"] = _bn_stats(model, dataset, tcfg, seed, epoch, device)
            report = validate(task, model, meta, device, str(tcfg["val_precision"]))
            record["val"] = {k_: report[k_] for k_ in ("mean", "pooled", "miou", "per_class_mean", "n_cases")}
            record["val"]["cases"] = [
                {k_: v for k_, v in c.items() if k_ != "per_class"} for c in report["cases"]
            ]
            record["val_seconds"] = round(time.perf_counter() - t0, 3)
            score = _score(report, task.best_metric, task.best_mode)
            record["best"] = score > best_score or not report["n_cases"]  # nothing to score: latest
            if record["best"]:
                best_score = score
                _save(best_path, model, meta, config, record, None)
        if ctx.is_main:
            history.append(record)
            _write_log(log_path, history)
            state = {
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "best_score": best_score if math.isfinite(best_score) else None,
                "rng": _rng_state(),
            }
            _save(last_path, model, meta, config, record, state)
            if not best_path.exists():  # no validation yet: the latest weights are the best we have
                _save(best_path, model, meta, config, record, None)
            _print_epoch(record, epochs)
        ctx.barrier()
    return TrainResult(out=out, best=best_path, last=last_path, epochs=epochs, history=history)


def _bn_stats(
    model: nn.Module, dataset: Any, tcfg: dict[str, Any], seed: int, epoch: int, device: torch.device
) -> int:
    """Population BN statistics over up to ``train.bn_stats_batches`` training batches (seeded)."""
    g = _seed_epoch(dataset, seed + 7919, epoch)
    loader = DataLoader(
        dataset,
        batch_size=int(tcfg["batch_size"]),
        shuffle=True,
        num_workers=int(tcfg["num_workers"]),
        generator=g,
    )
    limit = int(tcfg["bn_stats_batches"])

    def images() -> Iterable[torch.Tensor]:
        for i, batch in enumerate(loader):
            if i >= limit:
                return
            x = torch.as_tensor(batch["image"]).as_subclass(torch.Tensor).to(device).float()
            yield pad_to_multiple(x, _stride(model))[0]

    return recompute_bn_stats(model, images())


def _stride(model: nn.Module) -> int:
    return 2 ** len(_unwrap(model).encoder.stages)


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


def _train_epoch(
    net: nn.Module,
    dataset: Any,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    tcfg: dict[str, Any],
    epoch: int,
    epochs: int,
    seed: int,
    device: torch.device,
    ctx: dist.Context,
) -> dict[str, Any]:
    g = _seed_epoch(dataset, seed, epoch)
    sampler = None
    if ctx.world_size > 1:
        sampler = DistributedSampler(
            dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed
        )
        sampler.set_epoch(epoch)
    loader = DataLoader(
        dataset,
        batch_size=int(tcfg["batch_size"]),
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=int(tcfg["num_workers"]),
        generator=g,
        pin_memory=device.type == "cuda",
    )
    dtype = training_dtype(device, tcfg.get("precision", "fp32"))
    max_steps = tcfg.get("max_steps_per_epoch")
    total = len(loader) if not max_steps else min(len(loader), int(max_steps))
    net.train()
    bar = tqdm(
        total=total,
        desc=f"epoch {epoch}/{epochs}",
        unit="batch",
        leave=False,
        disable=not (ctx.is_main and tcfg.get("progress", True)),
    )
    losses, samples, wait, t_start = [], 0, 0.0, time.perf_counter()
    step_times, waits = [], []
    t_fetch = time.perf_counter()
    for step, batch in enumerate(loader):
        if step >= total:
            break
        x = torch.as_tensor(batch["image"]).as_subclass(torch.Tensor).to(device, non_blocking=True).float()
        y = torch.as_tensor(batch["label"]).as_subclass(torch.Tensor).to(device, non_blocking=True)
        m = batch.get("mask")
        m = None if m is None else torch.as_tensor(m).as_subclass(torch.Tensor).to(device)
        waits.append(time.perf_counter() - t_fetch)
        wait += waits[-1]
        loss = loss_fn(_forward(net, x, dtype), y, m)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        samples += x.shape[0]
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        now = time.perf_counter()
        step_times.append(now - t_fetch)
        t_fetch = now
    bar.close()
    seconds = time.perf_counter() - t_start
    mean_loss = float(np.mean(losses)) if losses else math.nan
    if ctx.world_size > 1:
        mean_loss = ctx.mean(mean_loss)
    return {
        "epoch": epoch,
        "loss": mean_loss,
        "lr": optimizer.param_groups[0]["lr"],
        "steps": len(losses),
        "samples": samples * ctx.world_size,
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples * ctx.world_size / max(seconds, 1e-9), 3),
        "data_wait_fraction": round(wait / max(seconds, 1e-9), 4),
        "step_seconds_median": round(float(np.median(step_times)), 4) if step_times else None,
        "data_wait_seconds_median": round(float(np.median(waits)), 4) if waits else None,
    }


def _save(
    path: Path,
    model: nn.Module,
    meta: dict[str, Any],
    config: dict[str, Any],
    record: dict[str, Any],
    state: dict[str, Any] | None,
) -> None:
    provenance = {
        "task": config["task"],
        "config": config,
        "epoch": record["epoch"],
        "metrics": {k: v for k, v in record.items() if k != "val"}
        | {"val": record.get("val", {}).get("mean")},
    }
    save_checkpoint(path, _unwrap(model), state=state, provenance=provenance, **meta)


def _write_log(path: Path, records: list[dict[str, Any]]) -> None:
    from segnet_domains.io.atomic import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))


def _print_epoch(record: dict[str, Any], epochs: int) -> None:
    val = record.get("val", {}).get("mean") or {}
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record['loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in val.items() if v is not None]
    parts.append(f"{record['samples_per_s']:.1f} samples/s")
    print("  ".join(parts) + ("  (best)" if record.get("best") else ""), flush=True)
