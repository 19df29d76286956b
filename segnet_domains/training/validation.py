"""Validation of a model on a task's whole images or volumes, through the shared Segmenter."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from segnet_domains.checkpoint import make_info
from segnet_domains.inference import Segmenter
from segnet_domains.metrics import evaluate_case, summarize
from segnet_domains.training.task import Task


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
    net = getattr(model, "module", model)
    info = make_info(net, **metadata)
    seg = Segmenter(net, device=device, info=info, precision=precision)
    custom = task.evaluate(seg)  # a regression task (counting) scores itself
    if custom is not None:
        return custom
    scored, unlabeled = [], []
    for case in task.val_cases():
        pred = task.predict(seg, case)
        if case.label is None:
            unlabeled.append(case.name)
            continue
        k = info.out_channels
        scored.append(
            evaluate_case(pred, case.label, k, mask=case.mask, name=case.name, ignore_index=task.ignore_index)
        )
    report = summarize(scored, info.class_names, include_background=task.include_background)
    report["inference_only"] = unlabeled
    return report


def score(report: dict[str, Any], metric: str, mode: str = "max") -> float:
    """The validation score, higher = better (an error metric with ``mode="min"`` is negated)."""
    value = report.get("miou") if metric == "miou" else report.get("mean", {}).get(metric)
    if value is None:
        return -math.inf
    return float(value) if mode == "max" else -float(value)
