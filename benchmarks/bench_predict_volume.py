"""``predict-volume`` on a 197×233×189 volume (ATLAS's MNI152 1 mm grid) vs the raw model on the same slices.

Compares, in the same process, on the same Segmenter (on ``--device``, in
the precision ``"auto"`` picks there; timings synchronised with the device):

* api — :meth:`Segmenter.predict_volume` on the volume in memory: normalise
  (whole-volume percentiles), batch 189 axial slices (the next batch
  gathered in a thread), pad, run, argmax on the device, labels back;
* file — :func:`segnet_domains.predict_files.predict_volume_file`: the same,
  plus reading the gzip NIfTI, reorienting to RAS and back, and writing the
  mask NIfTI (atomic);
* raw — only the network's forward passes over the same 189 padded slices,
  already prepared in memory (the floor the pipeline cannot beat).

Runs alternate (raw, api, file, raw, …, raw) and medians are compared, so
load from other processes hits all alike; ``*_paired`` is the median of each
run's ratio to the mean of the raw runs just before and after it (a shared
virtual machine's speed drifts within seconds). Target (issue #16): api / raw
≤ 1.10; file / raw also carries the file formats' own cost (gzip in and out).

Usage: ``python benchmarks/bench_predict_volume.py [--device cpu|cuda|auto] [--repeats 2] [--json OUT]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import add_common_args, network, pick_device, prepared, timed

from segnet_domains import Segmenter, SegNet
from segnet_domains.adapters import VolumeSliceAdapter
from segnet_domains.checkpoint import make_info
from segnet_domains.predict_files import predict_volume_file
from segnet_domains.synthetic.brain import PHANTOM_AFFINE as MNI_AFFINE
from segnet_domains.synthetic.brain import phantom_brain as atlas_volume

SHAPE = (197, 233, 189)


def raw_forward_s(seg: Segmenter, volume: np.ndarray) -> float:
    """Seconds for the network alone over the volume's axial slices (inputs prepared beforehand)."""
    adapter = VolumeSliceAdapter(2, seg.info.context, seg.info.normalization)
    slices = adapter.prepare(volume)
    batches = [prepared(seg, torch.from_numpy(b)) for _, b in adapter.batches(slices, seg.batch_size)]
    return timed(network(seg, *batches), seg.device)  # inputs already in the backend's dtype and layout


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--features", default="64,128,256,512,512")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", help="also write the figures to this file")
    add_common_args(ap)
    args = ap.parse_args()
    features = [int(f) for f in args.features.split(",")]

    torch.manual_seed(0)
    model = SegNet(1, 2, features=features)
    info = make_info(model, domain="mri", slice_axis=2, class_names=["background", "lesion"])
    seg = Segmenter(model, device=pick_device(args.device), info=info, batch_size=args.batch_size)
    vol, _ = atlas_volume(np.random.default_rng(0), SHAPE, lesions=2)

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "sub-r001s001_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz"
        img = nib.Nifti1Image(vol, MNI_AFFINE)
        img.set_qform(MNI_AFFINE, code=4)
        img.set_sform(MNI_AFFINE, code=4)
        nib.save(img, src)
        out = Path(tmp) / "mask.nii.gz"
        raw_forward_s(seg, vol[:, :, :16])  # warm-up (oneDNN primitives)
        raw, api, full = [], [], []
        for _ in range(args.repeats):
            raw.append(raw_forward_s(seg, vol))
            api.append(timed(lambda: seg.predict_volume(vol, axis=2), seg.device))
            full.append(timed(lambda: predict_volume_file(seg, src, out, progress=False), seg.device))
        raw.append(raw_forward_s(seg, vol))  # raw, api, file, raw, …, raw: each run between two raw ones
        assert nib.load(out).shape == SHAPE

    # this machine's speed drifts within seconds (shared host): each run against the raw runs beside it
    beside = [(raw[i] + raw[i + 1]) / 2 for i in range(args.repeats)]
    api_paired = statistics.median(x / b for x, b in zip(api, beside))
    file_paired = statistics.median(x / b for x, b in zip(full, beside))

    r, a, f = statistics.median(raw), statistics.median(api), statistics.median(full)
    res = {
        "volume": list(SHAPE),
        "features": features,
        "device": str(seg.device),
        "precision": str(seg.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "raw_s_median": round(r, 3),
        "api_s_median": round(a, 3),
        "api_ratio": round(a / r, 3),
        "api_ratio_paired": round(api_paired, 3),
        "predict_volume_s_median": round(f, 3),
        "ratio": round(f / r, 3),
        "ratio_paired": round(file_paired, 3),
        "raw_s": [round(x, 3) for x in raw],
        "api_s": [round(x, 3) for x in api],
        "predict_volume_s": [round(x, 3) for x in full],
    }
    print(f"predict-volume {SHAPE} SegNet features={features} on {res['device']} ({res['precision']}, "
          f"{res['threads']} threads, batch {args.batch_size})")  # fmt: skip
    print(f"  raw model              {r:8.2f} s (median of {args.repeats}: {res['raw_s']})")
    print(f"  Segmenter.predict_volume {a:6.2f} s (median of {args.repeats}: {res['api_s']}), "
          f"{res['api_ratio']:.3f}x raw, paired {api_paired:.3f}x (target <= 1.10)")  # fmt: skip
    print(f"  predict-volume file    {f:8.2f} s (median of {args.repeats}: {res['predict_volume_s']}), "
          f"{res['ratio']:.3f}x raw, paired {file_paired:.3f}x (gzip NIfTI in and out included)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
