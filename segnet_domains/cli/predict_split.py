"""``segnet-domains predict-split --model CKPT --split S --out-dir DIR [--data-root DIR]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from segnet_domains.cli.common import add_model_args

    p = sub.add_parser(
        "predict-split",
        help="predict a benchmark split (CamVid, SUN-RGBD, MFN, ADE20K, SkyScapes, TLCGIS) for evaluate",
        description="Writes DIR/pred/NAME.png and DIR/truth/NAME.png in the data set's own label "
        "encoding; the task and its data settings come from the checkpoint's training config.",
    )
    p.add_argument("--split", required=True, help="split name: train, val, test, test_day, validation …")
    p.add_argument("--out-dir", required=True, help="folder for pred/ and truth/ (must not hold files)")
    p.add_argument("--data-root", help="local copy of the data set (default: the training config's)")
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override data settings, e.g. --set data.bands=[red,green,blue]",
    )
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segnet_domains.cli.common import load_segmenter
    from segnet_domains.datasets.export import predict_split

    seg = load_segmenter(args)
    n = predict_split(seg, args.split, args.out_dir, data_root=args.data_root, overrides=args.overrides)
    print(f"wrote {n} predictions to {args.out_dir}/pred and their truth to {args.out_dir}/truth")
    return 0
