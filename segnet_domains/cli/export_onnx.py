"""``segnet-domains export-onnx CKPT OUT.onnx``: an ONNX model that onnxruntime (and TensorRT) run."""

from __future__ import annotations

import argparse
from pathlib import Path

from segnet_domains.checkpoint import CheckpointError, read_info
from segnet_domains.cli.common import add_force_arg
from segnet_domains.io.safety import FileOutput, check_outputs
from segnet_domains.onnx_export import DEFAULT_OPSET, EXPORTERS


def is_our_onnx(path: Path) -> bool:
    """An ONNX model written by ``export-onnx`` (its metadata holds our header)."""
    try:
        read_info(path)
    except CheckpointError:
        return False
    return True


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export a checkpoint to ONNX (dynamic batch/height/width, metadata kept)",
        description=(
            "Export a checkpoint to ONNX: input 'image' (N×C×H×W float32, normalised), output 'logits' "
            "(N×K×H×W); the checkpoint's header (classes, colours, normalisation) is in metadata_props. "
            "Run it with any model command's --model OUT.onnx (onnxruntime backend)."
        ),
    )
    p.add_argument("checkpoint", help="segnet-domains checkpoint")
    p.add_argument("out", help="ONNX file to write (.onnx)")
    p.add_argument(
        "--opset",
        type=int,
        metavar="N",
        help=f"ONNX opset (default {DEFAULT_OPSET['torchscript']}; {DEFAULT_OPSET['dynamo']} with dynamo)",
    )
    p.add_argument("--fp16", action="store_true", help="compute in fp16 (GPU/TensorRT); I/O stays float32")
    p.add_argument(
        "--exporter",
        default="torchscript",
        choices=EXPORTERS,
        help="torch.onnx exporter",
    )
    add_force_arg(p, "an ONNX model exported earlier")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segnet_domains.onnx_export import export_onnx

    check_outputs(
        [args.checkpoint],
        [FileOutput(args.out, "ONNX model", "OUT", (".onnx",), ours=is_our_onnx)],
        force=args.force,
    )
    out = export_onnx(args.checkpoint, args.out, opset=args.opset, fp16=args.fp16, exporter=args.exporter)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {'fp16' if args.fp16 else 'fp32'})")
    return 0
