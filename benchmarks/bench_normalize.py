"""Percentile normalisation, old vs new in one run: a 197×233×189 int16 volume, a 4096² 3-band uint16 scene.

* old — what the inference path did before: MONAI ``ScaleIntensityRangePercentiles``
  (channel-wise; ``np.percentile`` above 10⁶ values per channel, else
  ``torch.quantile``: a full sort, once per percentile) on the float32 cast;
* new — :class:`~segnet_domains.adapters.Normalizer` (exact histogram for
  ≤16-bit integers, selection otherwise; one pass per channel), on ``--device``:
  a tensor already on the device is normalised there.

Also the statistics alone (``np.percentile`` vs :func:`~segnet_domains.percentiles.percentiles`),
and a check that both give the same numbers (max |Δ|). Runs alternate; medians.

Usage: ``python benchmarks/bench_normalize.py [--device cpu|cuda|auto] [--repeats 5] [--json OUT]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from monai.transforms import ScaleIntensityRangePercentiles

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Report, add_common_args, alternate, machine, median, pick_device

from segnet_domains.adapters import Normalizer
from segnet_domains.percentiles import percentiles

SPEC = {"mode": "percentile", "lower": 0.5, "upper": 99.5}


def old_normalise(chw: np.ndarray) -> np.ndarray:
    """The previous inference path: MONAI's percentile transform on the float32 cast."""
    t = ScaleIntensityRangePercentiles(
        lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True, channel_wise=True
    )
    return np.asarray(t(np.asarray(chw, np.float32)), np.float32)


def case(name: str, chw: np.ndarray, dev: torch.device, repeats: int, report: Report) -> None:
    norm = Normalizer(SPEC)
    on_device = torch.from_numpy(chw.astype(np.int32) if chw.dtype == np.uint16 else chw).to(dev)
    fns = {
        "old": lambda: old_normalise(chw),
        "new": lambda: norm(chw),
        "new_device": lambda: norm(on_device),
        "np_percentile": lambda: [np.percentile(c, [0.5, 99.5]) for c in chw],
        "percentiles": lambda: [percentiles(c, [0.5, 99.5]) for c in chw],
    }
    t = {k: median(v) for k, v in alternate(fns, dev, repeats).items()}
    new = norm(chw)
    diff = float(np.abs(old_normalise(chw) - new).max())
    device_diff = float(np.abs(norm(on_device).cpu().numpy() - new).max())
    report.add(
        name,
        f"old {t['old']:.3f} s, new {t['new']:.3f} s ({t['old'] / t['new']:.1f}×), new on {dev} tensor "
        f"{t['new_device']:.3f} s; statistics alone: np.percentile {t['np_percentile']:.3f} s, "
        f"ours {t['percentiles']:.3f} s; max |Δ| old/new {diff:.1e}, numpy/{dev} {device_diff:.1e}",
        shape=list(chw.shape),
        dtype=str(chw.dtype),
        old_s=round(t["old"], 4),
        new_s=round(t["new"], 4),
        speedup=round(t["old"] / t["new"], 2),
        new_device_s=round(t["new_device"], 4),
        np_percentile_s=round(t["np_percentile"], 4),
        percentiles_s=round(t["percentiles"], 4),
        max_abs_diff=diff,
        max_abs_diff_device=device_diff,
    )


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scene", type=int, default=4096, help="scene edge")
    args = ap.parse_args()
    dev = pick_device(args.device)
    report = Report(args.json, **machine(dev))
    rng = np.random.default_rng(0)
    volume = rng.normal(300, 120, (1, 197, 233, 189)).clip(0, 4000).astype(np.int16)
    case("volume_int16", volume, dev, args.repeats, report)
    scene = rng.gamma(2.0, 600.0, (3, args.scene, args.scene)).astype(np.uint16)
    case("scene_uint16", scene, dev, args.repeats, report)
    small = rng.integers(0, 256, (3, 360, 480), dtype=np.uint8)  # a CamVid frame: torch.quantile's regime
    case("frame_uint8", small, dev, args.repeats, report)
    return report.data


if __name__ == "__main__":
    main()
