"""What a run config builds: the model, the loss (with its class weights) and the optimizer."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from segnet_domains.errors import InputError
from segnet_domains.model import ARCHITECTURES, build_model
from segnet_domains.training.config import ModelConfig, TrainSettings
from segnet_domains.training.loss import SegmentationLoss, median_frequency_weights
from segnet_domains.training.task import Task

log = logging.getLogger(__name__)


def build_model_from_config(
    model_cfg: ModelConfig | Mapping[str, Any], in_channels: int, out_channels: int
) -> nn.Module:
    """Instantiate ``model.architecture`` with the config's arguments it accepts."""
    cfg = dataclasses.asdict(model_cfg) if isinstance(model_cfg, ModelConfig) else dict(model_cfg)
    arch = cfg.get("architecture", "SegNet")
    if arch not in ARCHITECTURES:
        raise InputError(
            "model.architecture", f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})"
        )
    accepted = inspect.signature(ARCHITECTURES[arch]).parameters
    args = {k: v for k, v in cfg.items() if k in accepted and k != "architecture" and v is not None}
    try:
        return build_model(arch, {"in_channels": in_channels, "out_channels": out_channels, **args})
    except (TypeError, ValueError) as exc:
        raise InputError("model", f"cannot build {arch} from {args}: {exc}") from None


def build_optimizer(
    params: Iterable[nn.Parameter], train: TrainSettings | Mapping[str, Any]
) -> torch.optim.Optimizer:
    """SGD (the paper's lr 0.001, momentum 0.9) or Adam, from ``train.*``."""
    t = train if isinstance(train, TrainSettings) else TrainSettings(**train)
    name = str(t.optimizer).lower()
    lr, wd = float(t.lr), float(t.weight_decay or 0.0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=float(t.momentum), weight_decay=wd)


def class_weights(task: Task, train: TrainSettings, num_classes: int) -> np.ndarray | None:
    """``train.class_weights``: ``None``, the published list, or median frequency over the task's labels.

    Raises:
        InputError: a list whose length is not the number of classes.
    """
    weights = train.class_weights
    if isinstance(weights, list):  # published weights (SegNet-Tutorial's CamVid)
        if len(weights) != num_classes:
            raise InputError("train.class_weights", f"{len(weights)} weights for {num_classes} classes")
        return np.asarray(weights, np.float32)
    if str(weights).lower() == "median_frequency":
        found = median_frequency_weights(task.train_labels(), num_classes)
        log.info("median-frequency class weights: %s", np.round(found, 3).tolist())
        return found
    return None


def build_loss(task: Task, train: TrainSettings, num_classes: int) -> nn.Module:
    """The task's own loss (a density head), else Dice + CE with the class weights and ignore index."""
    weights = class_weights(task, train, num_classes)
    loss_fn = task.loss(num_classes, weights)
    if loss_fn is not None:
        return loss_fn
    return SegmentationLoss(
        num_classes,
        weight=weights,
        ignore_index=task.ignore_index,
        lambda_dice=float(train.lambda_dice),
        lambda_ce=float(train.lambda_ce),
    )
