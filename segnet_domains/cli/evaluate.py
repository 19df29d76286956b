"""``segnet-domains evaluate --pred P --truth T [--protocol NAME] [--json]``.

Without ``--protocol``: Dice, Jaccard, precision, recall per case and mean.
With it: the metrics of a published result, computed its source's way
(:mod:`segnet_domains.protocols`).
"""

from __future__ import annotations

import argparse
import json

from segnet_domains.cli.common import int_in
from segnet_domains.protocols import PROTOCOLS


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
    p.add_argument(
        "--protocol",
        choices=sorted({proto.name for proto in PROTOCOLS.values()}),
        help="score as a published result did (truth as distributed; see segnet_domains/protocols.py)",
    )
    p.add_argument(
        "--pred-encoding",
        choices=["native", "model"],
        default="native",
        help="with --protocol: predictions in the data set's encoding (predict-split, default) or as "
        "model class indices (predict-image)",
    )
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segnet_domains.errors import InputError
    from segnet_domains.evaluate import (
        evaluate_paths,
        evaluate_protocol,
        format_protocol_report,
        format_report,
    )

    if args.protocol:
        if args.classes is not None or args.include_background:
            raise InputError(None, "--classes and --include-background do not apply with --protocol")
        report = evaluate_protocol(
            args.pred, args.truth, args.protocol, valid_masks=args.mask, pred_encoding=args.pred_encoding
        )
        print(json.dumps(report, indent=2) if args.json else format_protocol_report(report))
        return 0
    report = evaluate_paths(
        args.pred,
        args.truth,
        num_classes=args.classes,
        include_background=args.include_background,
        valid_masks=args.mask,
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
