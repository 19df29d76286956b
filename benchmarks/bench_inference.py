"""CamVid-size inference speed: ms per 360×480 RGB frame, SegNet(3, 12), ``Segmenter.predict_proba``.

Compares, in the same run, on ``--device`` (timings synchronised with it):
* fp32 eager — the plain model, no BN folding, NCHW, fp32 (the baseline);
* the network alone — the default Segmenter's prepared network on an input
  already padded and on the device (the raw baseline of the end-to-end path);
* the default path — ``Segmenter(model, device=...)`` end to end, with the
  precision ``"auto"`` picks here by its timed probe (on a bf16 CPU: fused
  BN, bf16 weights, channels-last);
and reports the default path's GFLOP/s (212.8 GFLOP per frame, as counted
for SegNet at 360×480) as a fraction of this machine's bf16 matrix-multiply
peak, measured with a large bf16 matmul in the same process.

Paper reference: 217 ms per frame on an NVIDIA Titan GPU (TPAMI 2017, Table 6).

The network alone, ``predict_proba`` and ``predict`` (labels only) are timed
in alternation (load from other processes hits all alike); besides the ratio of
the medians, the JSON gives the median of each repetition's own ratio to the
network run just before it (``*_paired``: slow drift cancels). ``--features
8,16,32,64,64`` (a reduced SegNet) makes the host-side costs around the
network weigh as they do on a GPU: target ``predict_proba`` ≤ 1.15× the network.

``--classes 150`` (ADE20K) shows the cost of handing many classes' probabilities to the host.

Usage: ``python benchmarks/bench_inference.py [--device cpu|cuda|auto] [--features 64,128,256,512,512]
[--classes 12] [--repeats 5] [--compile] [--json OUT]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import add_common_args, alternate, finish, median, network, pick_device, prepared, timed

from segnet_domains import Segmenter, SegNet
from segnet_domains._openmp import passive_waiting
from segnet_domains.devices import cpu_has_bf16, probe_precision

GFLOP_PER_FRAME = 212.8
PAPER_FEATURES = [64, 128, 256, 512, 512]


def median_ms(fn, repeats: int, device: torch.device | str = "cpu") -> float:
    timed(fn, device)  # warm-up (oneDNN primitive creation, allocator)
    return statistics.median(timed(fn, device) for _ in range(repeats)) * 1000


def matmul_peak_gflops(dtype: torch.dtype, n: int = 4096, repeats: int = 5, device: str = "cpu") -> float:
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    ms = median_ms(lambda: a @ b, repeats, torch.device(device))
    return 2 * n**3 / (ms / 1000) / 1e9


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--features", default="64,128,256,512,512", help="SegNet widths (8,16,32,64,64: reduced)")
    ap.add_argument("--classes", type=int, default=12, help="classes (CamVid 12; SUN RGB-D 37, ADE20K 150)")
    ap.add_argument("--compile", action="store_true", help="also time Segmenter(compile=True)")
    add_common_args(ap)
    args = ap.parse_args()
    dev = pick_device(args.device)
    features = [int(f) for f in args.features.split(",")]

    torch.manual_seed(0)
    model = SegNet(3, args.classes, features=features).eval()
    frame = np.random.default_rng(0).integers(0, 256, (360, 480, 3), dtype=np.uint8)

    with torch.inference_mode():
        eager_model = model.to(dev)
        x = torch.from_numpy(np.moveaxis(frame, -1, 0).astype(np.float32) / 255)[None].to(dev)
        eager_ms = median_ms(lambda: torch.softmax(eager_model(x), 1), args.repeats, dev)
    fp32 = Segmenter(model, device=dev, precision="fp32")
    fp32_ms = median_ms(lambda: fp32.predict_proba(frame), args.repeats, dev)
    default = Segmenter(model, device=dev)
    fns = {
        "network": network(default, prepared(default, x.cpu())),
        "proba": lambda: default.predict_proba(frame),
        "labels": lambda: default.predict(frame),
    }
    if args.compile:
        compiled = Segmenter(model, device=dev, compile=True)
        fns["compiled_network"] = network(compiled, prepared(compiled, x.cpu()))
        fns["compiled_proba"] = lambda: compiled.predict_proba(frame)
    runs = alternate(fns, dev, args.repeats, warmup=2)
    times = {k: median(v) * 1000 for k, v in runs.items()}
    net_ms, default_ms, labels_ms = times["network"], times["proba"], times["labels"]
    # each repetition's end-to-end time over the network time measured just before it: drift cancels
    paired = {k: median([a / b for a, b in zip(runs[k], runs["network"])]) for k in ("proba", "labels")}
    print(f"  network alone {net_ms:.1f} ms, end to end {default_ms:.1f} ms", flush=True)

    peak_dtype = torch.bfloat16 if default.dtype == torch.bfloat16 or dev.type == "cuda" else torch.float32
    paper = features == PAPER_FEATURES and args.classes == 12  # 212.8 GFLOP: the paper network's count
    peak = matmul_peak_gflops(peak_dtype, device=str(dev)) if paper else float("nan")
    achieved = GFLOP_PER_FRAME / (default_ms / 1000) if paper else float("nan")
    probe = probe_precision(dev) if dev.type != "mps" else None
    res = {
        "device": str(default.device),
        "precision": str(default.dtype).removeprefix("torch."),
        "precision_probe_fp32_ms": None if probe is None else round(probe.fp32_s * 1e3, 3),
        "precision_probe_low_ms": None if probe is None else round(probe.low_s * 1e3, 3),
        "cpu_bf16": cpu_has_bf16(),
        "threads": torch.get_num_threads(),
        "openmp_passive_waiting": passive_waiting(),
        "features": features,
        "classes": args.classes,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "fp32_eager_ms": round(eager_ms, 1),
        "fp32_segmenter_ms": round(fp32_ms, 1),
        "network_ms": round(net_ms, 1),
        "default_ms": round(default_ms, 1),
        "end_to_end_over_network": round(default_ms / net_ms, 3),
        "end_to_end_over_network_paired": round(paired["proba"], 3),
        "labels_ms": round(labels_ms, 1),
        "labels_over_network": round(labels_ms / net_ms, 3),
        "labels_over_network_paired": round(paired["labels"], 3),
        **{f"{k}_ms": round(v, 1) for k, v in times.items() if k.startswith("compiled")},
        "speedup_vs_fp32_eager": round(eager_ms / default_ms, 2),
        "default_gflops": round(achieved, 1) if paper else None,
        "matmul_peak_gflops": round(peak, 1) if paper else None,
        "fraction_of_peak": round(achieved / peak, 3) if paper else None,
        "paper_gpu_ms": 217,
    }
    print(f"SegNet(3,{args.classes}) features={features} 360x480 on {res['device']} "
          f"({res['threads']} threads, {'passive' if passive_waiting() else 'spinning'} OpenMP waits), "
          f"load {res['load_average_1min']}")  # fmt: skip
    print(f"  fp32 eager            {eager_ms:8.1f} ms/frame (baseline)")
    print(f"  Segmenter fp32        {fp32_ms:8.1f} ms/frame (fused BN, channels-last)")
    print(f"  network alone         {net_ms:8.1f} ms/frame (the raw baseline)")
    print(f"  Segmenter default     {default_ms:8.1f} ms/frame ({res['precision']}), "
          f"{res['speedup_vs_fp32_eager']}x fp32 eager, {res['end_to_end_over_network']}x net "
          f"(predict_proba; target <= 1.15); paired {res['end_to_end_over_network_paired']}x")  # fmt: skip
    print(f"  Segmenter.predict     {labels_ms:8.1f} ms/frame (labels only), "
          f"{res['labels_over_network']}x net")  # fmt: skip
    if args.compile:
        print(f"  compiled network      {times['compiled_network']:8.1f} ms/frame; "
              f"compiled predict_proba {times['compiled_proba']:.1f} ms/frame")  # fmt: skip
    if paper:
        print(f"  {achieved:.0f} GFLOP/s = {res['fraction_of_peak']:.2f} of the {peak:.0f} GFLOP/s "
              f"{str(peak_dtype).removeprefix('torch.')} matmul peak (target >= 0.85)")  # fmt: skip
    return finish(args, res)


if __name__ == "__main__":
    main()
