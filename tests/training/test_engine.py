"""The shared engine on the miniature ATLAS and RITE layouts: it learns, logs, checkpoints, validates."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segnet_domains import load_checkpoint, read_info
from segnet_domains.training import build_config, get_task, train, validate
from segnet_domains.training.engine import build_model_from_config, recompute_bn_stats
from tests.training.conftest import CONFIGS, TINY_RITE


def test_short_atlas_run_learns(atlas_run) -> None:
    """Validation Dice of the trained model is clearly above the same model untrained."""
    config, result = atlas_run
    task = get_task("atlas_lesion")(config)
    meta = task.metadata()
    in_ch, k = meta.pop("in_channels"), meta.pop("out_channels")
    torch.manual_seed(config["train"]["seed"])
    untrained = build_model_from_config(config["model"], in_ch, k)
    before = validate(task, untrained, meta)["mean"]["dice"] or 0.0
    after = validate(task, load_checkpoint(result.best).model, meta)["mean"]["dice"]
    assert after > 0.4, after
    assert after > before + 0.3, (before, after)


def test_run_writes_log_checkpoints_and_metadata(atlas_run) -> None:
    config, result = atlas_run
    out = Path(config["out"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, 9))
    assert all(np.isfinite(r["loss"]) for r in records)
    assert records[-1]["loss"] < records[0]["loss"]
    validated = [r for r in records if "val" in r]
    assert [r["epoch"] for r in validated] == [4, 8]  # val_every=4 and the last epoch
    assert validated[-1]["val"]["n_cases"] == 1  # the held-out subject; the unlabeled one is not scored
    assert {"dice", "jaccard", "precision", "recall"} <= set(validated[-1]["val"]["mean"])
    info = read_info(result.best)
    assert info.in_channels == 1 and info.context == 0 and info.slice_axis == 2
    assert info.domain == "mri" and info.class_names == ["background", "lesion"]
    assert info.normalization["mode"] == "percentile"
    assert info.provenance["task"] == "atlas_lesion" and info.provenance["config"]["train"]["epochs"] == 8
    last = load_checkpoint(result.last)
    assert last.state["epoch"] == 8 and "optimizer" in last.state and "rng" in last.state
    assert load_checkpoint(result.best).state is None  # best.pt is a plain model for front ends


def test_recompute_bn_stats_gives_population_statistics() -> None:
    from segnet_domains import SegNet

    torch.manual_seed(0)
    model = SegNet(1, 2, features=(4, 4, 4, 4, 4))
    x = [torch.randn(4, 1, 32, 32) * 3 + 5 for _ in range(3)]
    assert recompute_bn_stats(model, x) == 3
    first = model.encoder.stages[0][0]
    with torch.no_grad():
        z = first.conv(torch.cat(x))
    assert torch.allclose(first.norm.running_mean, z.mean((0, 2, 3)), atol=1e-4)
    assert first.norm.momentum == 0.1 and model.training  # restored


def test_rite_av_task_ignores_fov_and_unknown(rite_root: Path, tmp_path: Path) -> None:
    """Artery/vein: 4 classes, FOV mask and white 'unknown' pixels excluded; median-frequency weights."""
    config = build_config(
        CONFIGS / "rite_vessels.yaml",
        [*TINY_RITE, "task=rite_av", "train.epochs=1", "train.class_weights=median_frequency"],
        data_root=rite_root,
        out=tmp_path / "av",
    )
    task = get_task("rite_av")(config)
    item = task.train_dataset()[0][0]
    assert item["image"].shape == (3, 32, 32) and item["label"].shape == (1, 32, 32)
    assert set(np.unique(item["mask"]).tolist()) <= {0.0, 1.0}
    assert set(np.unique(item["label"]).tolist()) <= {0, 1, 2, 3, 255}
    result = train(config)
    info = read_info(result.best)
    assert info.class_names == ["background", "artery", "vein", "crossing"] and info.domain == "fundus"
    val = result.history[-1]["val"]
    assert val["n_cases"] == 2 and val["mean"]["dice"] is not None
    # validation metrics ignore pixels outside the field of view: blanking them in the truth changes nothing
    cases = list(task.val_cases())
    case = copy.deepcopy(cases[0])
    assert (~case.mask).any()
    case.label[~case.mask] = 0
    task.val_cases = lambda: iter([case])  # type: ignore[method-assign]
    blanked = validate(
        task,
        load_checkpoint(result.best).model,
        {k: v for k, v in task.metadata().items() if k not in ("in_channels", "out_channels")},
    )
    task.val_cases = lambda: iter(cases[:1])  # type: ignore[method-assign]
    original = validate(
        task,
        load_checkpoint(result.best).model,
        {k: v for k, v in task.metadata().items() if k not in ("in_channels", "out_channels")},
    )
    assert blanked["cases"][0]["dice"] == pytest.approx(original["cases"][0]["dice"])


def test_same_seed_same_run(rite_root: Path, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        cfg = build_config(
            CONFIGS / "rite_vessels.yaml",
            [*TINY_RITE, "train.epochs=1"],
            data_root=rite_root,
            out=tmp_path / name,
        )
        runs.append(train(cfg).history[-1])
    assert runs[0]["loss"] == runs[1]["loss"]
    assert runs[0]["val"]["mean"] == runs[1]["val"]["mean"]


def test_bf16_autocast_training_runs(rite_root: Path, tmp_path: Path) -> None:
    cfg = build_config(
        CONFIGS / "rite_vessels.yaml",
        [*TINY_RITE, "train.epochs=1", "train.precision=bf16"],
        data_root=rite_root,
        out=tmp_path / "bf16",
    )
    record = train(cfg).history[-1]
    assert np.isfinite(record["loss"]) and record["val"]["mean"]["dice"] is not None
    fp32 = torch.float32
    from segnet_domains.training.engine import training_dtype

    assert training_dtype(torch.device("cpu"), "fp32") == fp32
    assert training_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
