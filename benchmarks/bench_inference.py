"""CamVid-size inference speed: ms per 360×480 RGB frame, SegNet(3, 12), ``Segmenter.predict_proba``.

Compares, in the same run:
* fp32 eager — the plain model, no BN folding, NCHW, fp32 (the baseline);
* the default path — what ``Segmenter(model, device="auto")`` picks here
  (on a bf16 CPU: fused BN, bf16 weights, channels-last);
and reports the default path's GFLOP/s (212.8 GFLOP per frame, as counted
for SegNet at 360×480) as a fraction of this machine's bf16 matrix-multiply
peak, measured with a large bf16 matmul in the same process.

Paper reference: 217 ms per frame on an NVIDIA Titan GPU (TPAMI 2017, Table 6).

Usage: ``python benchmarks/bench_inference.py [--repeats 5] [--json OUT]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from segnet_domains import Segmenter, SegNet
from segnet_domains.devices import cpu_has_bf16

GFLOP_PER_FRAME = 212.8


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation, allocator)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def matmul_peak_gflops(dtype: torch.dtype, n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    ms = median_ms(lambda: a @ b, repeats)
    return 2 * n**3 / (ms / 1000) / 1e9


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = SegNet(3, 12).eval()
    frame = np.random.default_rng(0).integers(0, 256, (360, 480, 3), dtype=np.uint8)

    with torch.inference_mode():
        x = torch.from_numpy(np.moveaxis(frame, -1, 0).astype(np.float32) / 255)[None]
        eager_ms = median_ms(lambda: torch.softmax(model(x), 1), args.repeats)
    fp32 = Segmenter(model, device="cpu", precision="fp32")
    fp32_ms = median_ms(lambda: fp32.predict_proba(frame), args.repeats)
    default = Segmenter(model, device="auto")
    default_ms = median_ms(lambda: default.predict_proba(frame), args.repeats)

    peak_dtype = torch.bfloat16 if default.dtype == torch.bfloat16 else torch.float32
    peak = matmul_peak_gflops(peak_dtype)
    achieved = GFLOP_PER_FRAME / (default_ms / 1000)
    res = {
        "device": str(default.device),
        "precision": str(default.dtype).removeprefix("torch."),
        "cpu_bf16": cpu_has_bf16(),
        "threads": torch.get_num_threads(),
        "fp32_eager_ms": round(eager_ms, 1),
        "fp32_segmenter_ms": round(fp32_ms, 1),
        "default_ms": round(default_ms, 1),
        "speedup_vs_fp32_eager": round(eager_ms / default_ms, 2),
        "default_gflops": round(achieved, 1),
        "matmul_peak_gflops": round(peak, 1),
        "fraction_of_peak": round(achieved / peak, 3),
        "paper_gpu_ms": 217,
    }
    print(f"SegNet(3,12) 360x480 on {res['device']} ({res['threads']} threads)")
    print(f"  fp32 eager            {eager_ms:8.1f} ms/frame (baseline)")
    print(f"  Segmenter fp32        {fp32_ms:8.1f} ms/frame (fused BN, channels-last)")
    print(f"  Segmenter default     {default_ms:8.1f} ms/frame ({res['precision']}), "
          f"{res['speedup_vs_fp32_eager']}x fp32 eager")  # fmt: skip
    print(f"  {achieved:.0f} GFLOP/s = {res['fraction_of_peak']:.2f} of the {peak:.0f} GFLOP/s "
          f"{str(peak_dtype).removeprefix('torch.')} matmul peak (target >= 0.70)")  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return res


if __name__ == "__main__":
    main()
