"""``predict-image`` and ``predict-volume``: one file in, one aligned label file out."""

from __future__ import annotations

import argparse

import numpy as np

from segnet_domains.cli.common import add_force_arg, add_model_args, load_segmenter
from segnet_domains.errors import InputError
from segnet_domains.io.safety import check_outputs
from segnet_domains.medical.dicom import SEG_TYPES
from segnet_domains.medical.volumes import check_labels_output
from segnet_domains.predict_files import (
    check_count_output,
    count_image_file,
    image_outputs,
    predict_image_file,
    predict_volume_file,
    volume_outputs,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict-image", help="segment a PNG/JPEG/TIFF image into a label image")
    p.add_argument("image", help="input image")
    p.add_argument("--out", "-o", required=True, help="label image (.png or .tif)")
    p.add_argument("--overlay", help="also write a picture of the mask drawn over the image (.png/.jpg/.tif)")
    p.add_argument(
        "--count",
        action="store_true",
        help="crowd counting (density-head model): print the count; --out .txt (count) or .npy (density)",
    )
    add_force_arg(p, "existing output images")
    add_model_args(p)
    p.set_defaults(func=run_image)

    p = sub.add_parser("predict-volume", help="segment a NIfTI volume or a DICOM series slice by slice")
    p.add_argument("volume", help="input .nii / .nii.gz, or a DICOM series (its folder or one of its files)")
    p.add_argument(
        "--out",
        "-o",
        required=True,
        help="mask .nii.gz (same shape, affine and header), or .dcm: DICOM SEG of a DICOM input",
    )
    p.add_argument("--series", metavar="UID", help="SeriesInstanceUID to read when a folder holds several")
    p.add_argument(
        "--seg-type",
        choices=list(SEG_TYPES),
        default="binary",
        help="DICOM SEG encoding: binary (one frame per segment and slice) or labelmap (DICOM 2024)",
    )
    p.add_argument(
        "--axis",
        type=int,
        choices=[0, 1, 2],
        help="anatomical slicing axis in RAS: 0 sagittal, 1 coronal, 2 axial",
    )
    add_force_arg(p, "an existing NIfTI mask")
    add_model_args(p)
    p.set_defaults(func=run_volume)


def run_image(args: argparse.Namespace) -> int:
    if args.count and args.overlay:
        raise InputError(args.overlay, "--overlay does not apply to --count")
    if args.count:
        check_count_output(args.out)
    outputs = image_outputs(args.out, args.overlay, count=args.count)
    check_outputs([args.image, args.model], outputs, force=args.force)
    seg = load_segmenter(args)
    if args.count:
        count = count_image_file(seg, args.image, args.out)
        print(f"count {count:.2f} ({args.image}); wrote {args.out}")
        return 0
    labels = predict_image_file(seg, args.image, args.out, args.overlay)
    _report(args.out, labels, seg.info.class_names)
    return 0


def run_volume(args: argparse.Namespace) -> int:
    check_labels_output(args.volume, args.out)
    check_outputs([args.volume, args.model], volume_outputs(args.out), force=args.force)
    seg = load_segmenter(args)
    labels = predict_volume_file(
        seg, args.volume, args.out, axis=args.axis, series_uid=args.series, seg_type=args.seg_type
    )
    _report(args.out, labels, seg.info.class_names)
    return 0


def _report(out: str, labels: np.ndarray, names: list[str]) -> None:
    counts = np.bincount(labels.ravel(), minlength=len(names))
    parts = ", ".join(f"{n}={c}" for n, c in zip(names, counts) if c)
    print(f"wrote {out} {labels.shape} ({parts})")
