"""``segnet-domains evaluate --pred P --truth T [--json]``: Dice, Jaccard, precision, recall."""

from __future__ import annotations

import argparse
import json

from segnet_domains.cli.common import int_in


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predicted masks against ground truth (files, or folders matched by name)",
    )
    p.add_argument("--pred", required=True, help="predicted label file or folder (.nii.gz, .png, .tif)")
    p.add_argument("--truth", required=True, help="ground-truth label file or folder")
    p.add_argument(
        "--mask", help="valid-pixel mask file or folder (e.g. RITE fields of view); other pixels are ignored"
    )
    p.add_argument(
        "--classes", type=int_in("--classes", 1, 65536), help="number of classes (default: largest label + 1)"
    )
    p.add_argument(
        "--include-background", action="store_true", help="average over all classes, not the foreground"
    )
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segnet_domains.evaluate import evaluate_paths, format_report

    report = evaluate_paths(
        args.pred,
        args.truth,
        num_classes=args.classes,
        include_background=args.include_background,
        valid_masks=args.mask,
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
