"""The training run's config: typed sections, their defaults, and the one place they are checked.

A run config is YAML (``pipelines/configs/*.yaml``) merged over
:data:`DEFAULTS` and the task's ``data.*`` keys, then ``--set`` overrides
(:mod:`segnet_domains.config` does the merging and refuses unknown keys and
values of the wrong type, one line naming the file or ``--set`` and the
key). :meth:`RunConfig.from_dict` then checks ranges (a positive learning
rate, widths the checkpoint contract accepts …) and converts the mapping
into dataclasses once; the engine reads attributes, never casts.

The model and train sections are :class:`ModelConfig` and
:class:`TrainSettings`; ``data`` stays a mapping because each task declares
its own keys (:attr:`~segnet_domains.training.task.Task.data_defaults`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segnet_domains.checkpoint import MAX_WIDTH
from segnet_domains.config import apply_overrides, merge, read_yaml
from segnet_domains.errors import InputError
from segnet_domains.training.task import get_task


@dataclass(frozen=True)
class ModelConfig:
    """``model.*``: the network (arguments named as in :mod:`segnet_domains.model`).

    Attributes:
        architecture: a name in :data:`~segnet_domains.model.segnet.ARCHITECTURES`.
        features: channels per encoder stage (one number for SegNetBasic's width).
        dropout: Bayesian SegNet dropout rate in ``[0, 1)``.
        depths: convolutions per encoder stage.
        head: ``"segmentation"`` or ``"density"`` (counting).
    """

    architecture: str = "SegNet"
    features: list[int] | int = field(default_factory=lambda: [64, 128, 256, 512, 512])
    dropout: float = 0.0
    depths: list[int] | None = field(default_factory=lambda: [2, 2, 3, 3, 3])
    head: str = "segmentation"


@dataclass(frozen=True)
class TrainSettings:
    """``train.*``: optimisation, seeding, devices and logging of a run.

    Attributes:
        epochs: epochs in all (a resumed run continues up to it).
        batch_size: samples per step (per process under ``torchrun``).
        optimizer: ``"sgd"`` (the paper's) or ``"adam"``.
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        class_weights: ``"none"``, ``"median_frequency"`` or one weight per class.
        lambda_dice: weight of the Dice term.
        lambda_ce: weight of the cross-entropy term.
        seed: seed of every random number (epoch ``e`` depends only on seed and ``e``).
        deterministic: ask cuDNN for deterministic kernels.
        num_workers: DataLoader worker processes.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ….
        val_every: validate every N epochs (and after the last).
        precision: forward pass in ``"fp32"``, ``"bf16"`` or ``"auto"``.
        val_precision: precision of validation inference.
        bn_stats_batches: batches for population BatchNorm statistics before validation (0: off).
        max_steps_per_epoch: stop an epoch after this many steps (``None``: whole epoch).
        progress: show the tqdm bar.
    """

    epochs: int = 50
    batch_size: int = 8
    optimizer: str = "sgd"
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0005
    class_weights: str | list[float] = "none"
    lambda_dice: float = 1.0
    lambda_ce: float = 1.0
    seed: int = 0
    deterministic: bool = True
    num_workers: int = 2
    device: str = "auto"
    val_every: int = 1
    precision: str = "fp32"
    val_precision: str = "fp32"
    bn_stats_batches: int = 50
    max_steps_per_epoch: int | None = None
    progress: bool = True


#: Every config key the engine knows, with its default. Tasks add their own ``data.*`` keys.
DEFAULTS: dict[str, Any] = {
    "task": None,
    "out": None,
    "data": {"root": None, "skip_corrupt": False},
    "model": dataclasses.asdict(ModelConfig()),
    "train": dataclasses.asdict(TrainSettings()),
}


@dataclass(frozen=True)
class RunConfig:
    """A whole, checked run config.

    Attributes:
        task: the registered task's name.
        out: the run folder.
        data: the task's ``data.*`` settings (``root`` and ``skip_corrupt`` always present).
        model: the network.
        train: the optimisation.
    """

    task: str
    out: Path
    data: dict[str, Any]
    model: ModelConfig
    train: TrainSettings

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], source: str = "config") -> RunConfig:
        """Check a merged config once and convert it (keys and types, then ranges).

        Args:
            config: what :func:`build_config` returns (or a mapping of the same shape).
            source: names the config in error messages (its file).

        Raises:
            InputError: unknown task or key, a value of the wrong type or out of range, no ``data.root``.
        """
        task_name = config.get("task")
        defaults = _defaults(get_task(task_name, source), source)
        merged = merge(defaults, {k: v for k, v in config.items() if k != "task"}, source)
        t, m = merged["train"], merged["model"]
        _check_train(t, source)
        _check_model(m, source)
        if not merged["data"].get("root"):
            raise InputError(source, "data.root is not set (give --data-root DIR or data.root in the config)")
        train = TrainSettings(
            **{
                **t,
                "lr": float(t["lr"]),
                "momentum": float(t["momentum"] or 0.0),
                "weight_decay": float(t["weight_decay"] or 0.0),
                "val_every": int(t["val_every"] or 1),
                "bn_stats_batches": int(t["bn_stats_batches"] or 0),
                "max_steps_per_epoch": t["max_steps_per_epoch"] or None,
                "optimizer": str(t["optimizer"]).lower(),
                "precision": str(t["precision"]).lower(),
            }
        )
        model = ModelConfig(**{**m, "dropout": float(m["dropout"] or 0.0)})
        out = merged["out"] or str(Path("runs") / str(task_name))
        return cls(task=str(task_name), out=Path(out), data=merged["data"], model=model, train=train)

    def to_dict(self) -> dict[str, Any]:
        """The plain mapping (tasks' ``self.config``, checkpoint provenance)."""
        return {
            "task": self.task,
            "out": str(self.out),
            "data": dict(self.data),
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
        }


def build_config(
    path: str | Path | None,
    overrides: Iterable[str] = (),
    data_root: str | Path | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Defaults (engine + task) ← YAML ← ``--set`` ← ``--data-root``/``--out``, checked.

    The task named by ``task:`` (in the file or an override) contributes its
    ``data.*`` keys, so every other key is checked against a known list. The
    result is checked by :meth:`RunConfig.from_dict`; it stays a mapping so a
    caller can read or adjust it before :func:`~segnet_domains.training.engine.train`.

    Raises:
        InputError: missing/invalid file, unknown task or config key, a bad value.
    """
    overrides = list(overrides)
    user = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "config"
    task_name = user.get("task")
    for text in overrides:
        key, _, value = text.partition("=")
        if key.strip() == "task":
            task_name = value.strip()
    config = merge(_defaults(get_task(task_name, source), source), user, source)
    apply_overrides(config, overrides)
    config["task"] = task_name
    if data_root is not None:
        config["data"]["root"] = str(data_root)
    if out is not None:
        config["out"] = str(out)
    if not config["out"]:
        config["out"] = str(Path("runs") / str(task_name))
    RunConfig.from_dict(config, source)
    return config


def _defaults(task_cls: type, source: str) -> dict[str, Any]:
    """:data:`DEFAULTS` with the task's ``data.*`` keys."""
    defaults = merge(DEFAULTS, {}, source)
    defaults["data"].update(task_cls.data_defaults)
    return defaults


def _check_train(t: Mapping[str, Any], source: str) -> None:
    """Ranges of ``train.*`` (types were checked against the defaults by the merge)."""
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
    steps = t["max_steps_per_epoch"]
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        raise InputError(
            source, f"train.max_steps_per_epoch must be a positive integer or null, got {steps!r}"
        )


def _check_model(m: Mapping[str, Any], source: str) -> None:
    """Model widths and dropout in range before anything is built (an absurd width is never allocated)."""
    features = m.get("features")
    widths = features if isinstance(features, list | tuple) else [features]
    if not widths or not all(
        isinstance(f, int) and not isinstance(f, bool) and 1 <= f <= MAX_WIDTH for f in widths
    ):
        raise InputError(source, f"model.features must be widths in [1, {MAX_WIDTH}], got {features!r}")
    dropout = m.get("dropout") or 0.0
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise InputError(source, f"model.dropout must be a number in [0, 1), got {dropout!r}")
