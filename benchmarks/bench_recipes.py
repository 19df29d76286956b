"""Training steps per second of each published-result config at its own input size and batch.

For every config in ``pipelines/configs/`` that reproduces a published
figure, builds the config's model, loss and optimizer exactly as the
training engine does and times full training steps (forward through the
engine's padded ``_forward``, loss, backward, optimizer step) on random
inputs of the config's shape: batch × bands × input size (random patches ×
``samples_per_image`` for SkyScapes, slices × ``samples_per_volume`` for
ATLAS). Data loading is not included. The first step is a warm-up (oneDNN
primitive creation) and is not counted.

Both wall-clock and process CPU seconds (all threads) are reported: on a
machine shared with other jobs the wall clock grows with the load, the CPU
seconds much less.

``docs/reproduce.md`` turns these figures into time estimates
(steps per epoch × epochs ÷ steps per second).

On a small shared CPU a full step of the big configs takes minutes:
``--max-images N`` measures steps of N images and scales the time to the
config's images per step (an estimate, reported as such).

Steps run on ``--device`` (CPU by default), timed with the device synchronised.

Usage: ``python benchmarks/bench_recipes.py [--device cpu|cuda|auto] [--steps 2] [--only NAMES] [--json OUT]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import add_common_args, pick_device, sync

from segnet_domains.training import DEFAULTS, build_config, get_task
from segnet_domains.training.engine import _forward, build_model_from_config, build_optimizer, seed_everything
from segnet_domains.training.loss import SegmentationLoss

CONFIGS = Path(__file__).resolve().parents[1] / "pipelines" / "configs"

#: config → (bands, H, W, images per step / batch_size): the shape one step sees.
SHAPES = {
    "camvid": (3, 360, 480, 1),
    "camvid_basic": (3, 360, 480, 1),
    "sunrgbd": (3, 360, 480, 1),
    "mfn": (4, 480, 640, 1),
    "ade20k": (3, 384, 384, 1),
    "skyscapes_dense": (3, 512, 512, 16),  # samples_per_image crops per scene
    "tlcgis": (4, 500, 500, 1),
    "atlas_r12": (1, 192, 224, 8),  # samples_per_volume slices per volume
}


def step_seconds(
    name: str, steps: int, max_images: int | None = None, device: torch.device | None = None
) -> dict[str, object]:
    """Median seconds of ``steps - 1`` timed training steps (after one warm-up) of config ``name``.

    With ``max_images`` the step is measured on at most that many images
    and the config's full step is estimated as proportional to its image
    count (``estimated_seconds_per_step``; stated as an estimate).
    """
    cfg = build_config(CONFIGS / f"{name}.yaml", data_root="unused")
    task_cls = get_task(cfg["task"])
    bands, h, w, per_item = SHAPES[name]
    k = getattr(task_cls, "layout").num_classes if hasattr(task_cls, "layout") else 2  # noqa: B009
    seed_everything(0)
    device = device or torch.device("cpu")
    model = build_model_from_config(cfg["model"], bands, k).to(device)
    t = cfg["train"]
    loss_fn = SegmentationLoss(
        k, ignore_index=task_cls.ignore_index, lambda_dice=t["lambda_dice"], lambda_ce=t["lambda_ce"]
    )
    opt = build_optimizer(model.parameters(), t)
    full = int(t["batch_size"]) * per_item
    n = min(full, max_images) if max_images else full
    x = torch.randn(n, bands, h, w, device=device)
    y = torch.randint(0, k, (n, 1, h, w), device=device)
    times, cpu = [], []
    model.train()
    for _ in range(steps):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        loss = loss_fn(_forward(model, x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    timed = sorted(times[1:]) or times
    sec = timed[len(timed) // 2]
    cpu_sec = sorted(cpu[1:])[len(timed) // 2]
    return {
        "config": name,
        "input": f"{n}x{bands}x{h}x{w}",
        "architecture": cfg["model"]["architecture"],
        "measured_seconds_per_step": round(sec, 2),
        "measured_cpu_seconds_per_step": round(
            cpu_sec, 2
        ),  # all threads; a busy machine inflates wall time only
        "images_per_step": full,
        "estimated_seconds_per_step": round(sec * full / n, 2),
        "estimated_steps_per_s": round(n / (sec * full), 5),
        "estimated_cpu_seconds_per_step": round(cpu_sec * full / n, 2),
        "timed_steps": len(times) - 1,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2, help="steps per config, the first a warm-up")
    p.add_argument("--only", help="comma-separated config names (default: all)")
    p.add_argument(
        "--max-images", type=int, help="measure on at most N images per step, scale to the config's batch"
    )
    p.add_argument("--json", help="write the results here")
    add_common_args(p)
    args = p.parse_args()
    device = pick_device(args.device)
    names = args.only.split(",") if args.only else list(SHAPES)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    assert DEFAULTS["train"]["precision"] == "fp32"
    results = []
    for name in names:
        r = step_seconds(name, max(2, args.steps), args.max_images, device)
        results.append(r)
        print(json.dumps(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
