"""Training throughput of the shared engine: slices/s for SegNet on 224×192 slices, batch 8, this CPU.

Runs the real pipeline — ``segnet_domains.training.train`` on an ATLAS-layout
dataset of synthetic 224×192×24 T1w volumes (MONAI CacheDataset,
RandCropByPosNegLabeld slices, flips/rotation/intensity augmentation, MONAI
DataLoader with workers) — for a few steps, and in the same process the
baseline: the same model, loss and optimizer stepping on one batch already in
memory (no data pipeline at all). Reported, as medians over steps:

* engine step time and slices/s;
* time waiting for data per step, as a fraction of the step (target ≤ 10 %);
* engine step / baseline step (the whole overhead of the engine).

Full-width SegNet (the paper's 64…512 features) is slow on a CPU: the default
is a few steps. ``--features 8,16,32,64,64`` gives a quick run.

Both run on ``--device`` (the engine via ``train.device``); baseline steps are
timed with the device synchronised.

Usage: ``python benchmarks/bench_training.py [--device cpu|cuda|auto] [--steps 5] [--workers 2] [--json OUT]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, add_common_args, pick_device, timed

from segnet_domains.synthetic.layouts import atlas_phantoms as make_atlas
from segnet_domains.training import SegmentationLoss, build_config, train
from segnet_domains.training.engine import (
    _forward,
    build_model_from_config,
    build_optimizer,
    training_dtype,
)

SHAPE = (224, 192, 24)
BATCH = 8


def baseline_step_s(config: dict, steps: int, dtype: torch.dtype, device: torch.device) -> list[float]:
    """Fwd+bwd+step times on one in-memory batch of the same shape, on ``device`` (no data pipeline)."""
    torch.manual_seed(0)
    model = build_model_from_config(config["model"], 1, 2).to(device).train()
    opt = build_optimizer(model.parameters(), config["train"])
    loss_fn = SegmentationLoss(2)
    x = torch.rand(BATCH, 1, *SHAPE[:2], device=device)
    y = (torch.rand(BATCH, 1, *SHAPE[:2], device=device) > 0.97).long()

    def step() -> None:
        loss = loss_fn(_forward(model, x, dtype), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = [timed(step, device) for _ in range(steps + 1)]
    return times[1:]  # the first step creates oneDNN primitives / CUDA kernels


def build_config_for_baseline(features: list[int]) -> dict:
    """The benchmark's model/optimizer settings without a dataset."""
    return {
        "model": {"architecture": "SegNet", "features": features, "dropout": 0.0},
        "train": {"optimizer": "sgd", "lr": 0.001, "momentum": 0.9, "weight_decay": 0.0005},
    }


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="training steps measured (after 1 warm-up)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    ap.add_argument("--features", default="64,128,256,512,512")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"], help="train.precision")
    ap.add_argument("--json", help="also write the figures to this file")
    add_common_args(ap)
    args = ap.parse_args()
    dev = pick_device(args.device)
    features = [int(f) for f in args.features.split(",")]

    # baseline steps before and after the engine run: load from other processes hits both alike
    half = max(2, args.steps // 2)
    dtype = training_dtype(dev, args.precision)
    base_times = baseline_step_s(build_config_for_baseline(features), half, dtype, dev)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "atlas"
        make_atlas(root, subjects=args.steps + 1, unlabeled=0, shape=SHAPE)  # one volume per step
        overrides = [
            f"model.features={features}",
            "train.epochs=1",
            "train.batch_size=1",  # one volume per batch …
            f"data.samples_per_volume={BATCH}",  # … cut into 8 slices: a batch of 8 slices
            f"train.max_steps_per_epoch={args.steps + 1}",
            f"train.num_workers={args.workers}",
            "train.bn_stats_batches=0",
            f"train.precision={args.precision}",
            f"train.device={dev}",
            "train.progress=false",
            "data.val_fraction=0",
        ]
        config = build_config(
            ROOT / "pipelines/configs/atlas_lesion.yaml", overrides, data_root=root, out=Path(tmp) / "run"
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            record = train(config).history[-1]
    base_times += baseline_step_s(config, half, dtype, dev)
    base = statistics.median(base_times)

    step, wait = record["step_seconds_median"], record["data_wait_seconds_median"]
    res = {
        "features": features,
        "device": str(dev),
        "precision": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "workers": args.workers,
        "slice": list(SHAPE[:2]),
        "batch": BATCH,
        "steps": record["steps"],
        "engine_step_s_median": step,
        "engine_slices_per_s": round(BATCH / step, 2),
        "data_wait_s_median": wait,
        "data_wait_fraction_median": round(wait / step, 4),
        "data_wait_fraction_epoch": record["data_wait_fraction"],
        "baseline_step_s_median": round(base, 4),
        "baseline_step_s": [round(t, 3) for t in base_times],
        "baseline_slices_per_s": round(BATCH / base, 2),
        "engine_over_baseline": round(step / base, 3),
    }
    head = f"SegNet features={features}, {SHAPE[0]}x{SHAPE[1]} slices, batch {BATCH}, {res['precision']}"
    print(f"{head}, {res['threads']} threads, {args.workers} workers")
    steps = res["steps"]
    print(f"  engine    {step:8.3f} s/step  {res['engine_slices_per_s']:7.2f} slices/s (median of {steps})")
    print(f"  baseline  {base:8.3f} s/step  {res['baseline_slices_per_s']:7.2f} slices/s (in-memory batch)")
    frac, epoch_frac = res["data_wait_fraction_median"], res["data_wait_fraction_epoch"]
    print(f"  data wait {wait:8.4f} s/step = {frac:.1%} of a step (target <= 10%)")
    print(f"  data wait over the whole epoch, worker start-up included: {epoch_frac:.1%}")
    print(f"  engine / baseline = {res['engine_over_baseline']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
