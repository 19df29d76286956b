"""onnxruntime against our PyTorch path: ms per 360×480 RGB frame through ``Segmenter.predict_proba``.

Both run the same Segmenter (same normalisation, padding, softmax and
cropping); only the backend that maps the padded batch to logits differs:

* torch — what ``Segmenter(model, device=...)`` picks here (fused BN,
  channels-last; bf16 on CPUs with native bf16, fp32 elsewhere);
* onnxruntime — the model exported by ``segnet_domains.onnx_export`` (TorchScript
  exporter, opset 17, fp32) in an ``InferenceSession`` with all graph
  optimisations and as many intra-op threads as PyTorch uses.

For SegNet(3, 12) (the paper's CamVid model) and a reduced SegNet
(8, 16, 32, 64, 64). Runs alternate (torch, onnxruntime, torch, …) and
medians are compared, so load from other processes hits both alike; the load
average is recorded because on a shared machine the absolute figures move.
``ratio`` = torch ms / onnxruntime ms (> 1: onnxruntime is faster).

Both backends return host arrays, so the times include the device's work.

Usage: ``python benchmarks/bench_onnx.py [--device cpu|cuda|auto] [--repeats 5] [--json OUT]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import add_common_args, finish, pick_device

from segnet_domains import Segmenter, SegNet
from segnet_domains.checkpoint import make_info

MODELS = {"SegNet(3,12)": (64, 128, 256, 512, 512), "SegNet(3,12) 8…64": (8, 16, 32, 64, 64)}


def alternate_ms(fns: dict[str, object], repeats: int) -> dict[str, float]:
    """Median ms of each callable, run in alternation after one warm-up each."""
    for fn in fns.values():
        fn()  # warm-up: oneDNN primitives, onnxruntime's first-run allocations
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def bench_model(name: str, features: tuple[int, ...], device: str, repeats: int) -> dict:
    torch.manual_seed(0)
    model = SegNet(3, 12, features=features).eval()
    info = make_info(model, normalization={"mode": "scale", "scale": 255.0})
    frame = np.random.default_rng(0).integers(0, 256, (360, 480, 3), dtype=np.uint8)
    torch_seg = Segmenter(model, device=device, info=info)
    t = time.perf_counter()
    ort_seg = Segmenter(model, device=device, info=info, backend="onnxruntime")
    export_s = time.perf_counter() - t
    ms = alternate_ms(
        {
            "torch": lambda: torch_seg.predict_proba(frame),
            "onnxruntime": lambda: ort_seg.predict_proba(frame),
        },
        repeats,
    )
    diff = float(np.abs(torch_seg.predict_proba(frame) - ort_seg.predict_proba(frame)).max())
    return {
        "model": name,
        "features": list(features),
        "torch_precision": str(torch_seg.dtype).removeprefix("torch."),
        "onnxruntime_providers": ort_seg.backend.providers,  # type: ignore[attr-defined]
        "torch_ms": round(ms["torch"], 1),
        "onnxruntime_ms": round(ms["onnxruntime"], 1),
        "ratio_torch_over_onnxruntime": round(ms["torch"] / ms["onnxruntime"], 2),
        "export_and_session_s": round(export_s, 1),
        "max_proba_diff": diff,
    }


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="also write the figures to this file")
    add_common_args(ap)
    args = ap.parse_args()
    args.device = str(pick_device(args.device))

    load_before = os.getloadavg()[0]
    rows = [bench_model(name, feats, args.device, args.repeats) for name, feats in MODELS.items()]
    load_after = os.getloadavg()[0]
    res = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_1min": [round(load_before, 1), round(load_after, 1)],
        "results": rows,
    }
    print(f"360x480 RGB frame, Segmenter.predict_proba, {args.device}, {res['threads']} threads")
    for r in rows:
        ratio = r["ratio_torch_over_onnxruntime"]
        print(f"  {r['model']:<20} torch ({r['torch_precision']}) {r['torch_ms']:8.1f} ms   "
              f"onnxruntime {r['onnxruntime_ms']:8.1f} ms   ratio torch/ort {ratio:.2f}   "
              f"(export {r['export_and_session_s']} s, max |Δp| {r['max_proba_diff']:.1e})")  # fmt: skip
    return finish(args, res, load_before)


if __name__ == "__main__":
    main()
