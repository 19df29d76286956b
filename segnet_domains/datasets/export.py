"""Predict a benchmark split and write predictions and truth in the data set's own label encoding.

``segnet-domains predict-split --model CKPT --split test --out-dir DIR`` runs
this: the task and its ``data.*`` settings come from the checkpoint's
training config (``--data-root`` points at the local copy), every image of
the split goes through the task's prediction (the shared
:class:`~segnet_domains.inference.Segmenter`, at the trained input size),
and ``DIR/pred/NAME.png`` and ``DIR/truth/NAME.png`` are written in the
*native* encoding of the annotation files (CamVid 0–10 + 11 void, ADE20K
0–150 …), so ``segnet-domains evaluate --pred DIR/pred --truth DIR/truth``
(and its ``--protocol``) scores them like the distributed annotations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from segnet_domains.errors import InputError
from segnet_domains.inference import Segmenter
from segnet_domains.io.images import write_labels


def prepare_output(out_dir: Path) -> tuple[Path, Path]:
    """``(out/pred, out/truth)``, created empty.

    Raises:
        InputError: either folder already holds files (never written over).
    """
    folders = (out_dir / "pred", out_dir / "truth")
    for folder in folders:
        if folder.is_dir() and any(folder.iterdir()):
            raise InputError(folder, "already holds files; give an empty or new --out-dir")
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def predict_split(
    segmenter: Segmenter,
    split: str,
    out_dir: str | Path,
    data_root: str | Path | None = None,
    overrides: Sequence[str] = (),
    progress: Callable[[str], Any] | None = None,
) -> int:
    """Write native-encoded predictions and truth of one split; returns the number of images.

    Raises:
        InputError: a checkpoint without a training config, a task without
            named 2D splits, or bad data (named).
    """
    from segnet_domains.config import apply_overrides
    from segnet_domains.training import build_config, get_task

    config = dict(segmenter.info.provenance.get("config") or {})
    if not config.get("task"):
        raise InputError(None, "the checkpoint has no training config (not written by segnet-domains train)")
    root = data_root if data_root is not None else (config.get("data") or {}).get("root")
    cfg = build_config(None, [f"task={config['task']}"], data_root=root, out=Path(out_dir))
    cfg["data"].update({k: v for k, v in (config.get("data") or {}).items() if k != "root"})
    apply_overrides(cfg, list(overrides))
    task = get_task(cfg["task"])(cfg)
    if not hasattr(task, "split_cases") or not hasattr(task, "layout"):
        raise InputError(
            None, f"task {cfg['task']!r} has no named 2D splits (volumes: use predict-volume per subject)"
        )
    pred_dir, truth_dir = prepare_output(Path(out_dir))
    n = 0
    for case in task.split_cases(split):
        labels = task.predict(segmenter, case)
        write_labels(pred_dir / f"{case.name}.png", task.layout.to_native(labels))
        assert case.label is not None
        write_labels(truth_dir / f"{case.name}.png", task.layout.to_native(case.label))
        n += 1
        if progress is not None:
            progress(case.name)
    return n
