"""``segnet-domains export-bundle CKPT OUT_DIR``: a MONAI bundle of a checkpoint."""

from __future__ import annotations

import argparse

from segnet_domains.cli.common import add_force_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-bundle",
        help="write a MONAI bundle (configs/, models/model.pt [and model.onnx], docs/) for a checkpoint",
        description="Run the result with: python -m monai.bundle run --config_file OUT_DIR/configs/"
        "inference.json --bundle_root OUT_DIR --input_dir IN --output_dir OUT",
    )
    p.add_argument("checkpoint", help="segnet-domains checkpoint")
    p.add_argument(
        "out_dir", help="bundle folder: new or empty (an earlier bundle is replaced only with --force)"
    )
    p.add_argument("--device", default="auto", help="device written into the inference config")
    p.add_argument("--onnx", action="store_true", help="also write models/model.onnx (see export-onnx)")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset for --onnx (default 17)")
    add_force_arg(p, "an earlier bundle in OUT_DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segnet_domains.bundle import export_bundle

    out = export_bundle(
        args.checkpoint, args.out_dir, device=args.device, force=args.force, onnx=args.onnx, opset=args.opset
    )
    print(f"wrote MONAI bundle {out}")
    return 0
