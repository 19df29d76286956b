"""Arguments and helpers shared by the CLI's command modules."""

from __future__ import annotations

import argparse
from pathlib import Path

from segnet_domains.errors import InputError
from segnet_domains.inference import Segmenter


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model CKPT --device D --precision P --batch-size N --tta --backend B``."""
    p.add_argument(
        "--model", "-m", required=True, metavar="CKPT", help="checkpoint file, or an .onnx from export-onnx"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA→MPS→CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, default=8, help="slices/tiles per forward pass")
    p.add_argument("--tta", action="store_true", help="average over horizontal/vertical flips")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnxruntime"],
        help="what runs the network: auto (onnxruntime for .onnx, else torch), torch, onnxruntime",
    )


def load_segmenter(args: argparse.Namespace) -> Segmenter:
    """A :class:`Segmenter` from the ``--model`` arguments."""
    try:
        return Segmenter.from_checkpoint(
            args.model,
            device=args.device,
            precision=args.precision,
            batch_size=args.batch_size,
            tta=args.tta,
            backend=args.backend,
        )
    except ValueError as exc:  # a device or precision that doesn't exist here
        raise InputError(None, str(exc)) from None


def check_output(path: str | Path) -> Path:
    """Fail early (before any work) when the output's folder is missing or not writable."""
    import os

    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(path, f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(path, f"output folder {parent} is not writable")
    return path
