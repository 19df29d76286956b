"""Arguments and helpers shared by the CLI's command modules."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from segnet_domains.errors import InputError
from segnet_domains.inference import Segmenter, SegmenterSpec
from segnet_domains.io.safety import check_number

#: Largest ``--batch-size`` (tiles/slices per forward pass) accepted.
MAX_BATCH = 4096


def int_in(name: str, lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=`` for an integer option in ``[lo, hi]`` (message names the option)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, not {text!r}") from None
        try:
            check_number(name, value, lo, hi)
        except InputError as exc:
            raise argparse.ArgumentTypeError(exc.problem) from None
        return value

    parse.__name__ = "integer"
    return parse


def add_force_arg(p: argparse.ArgumentParser, what: str = "an existing output of ours") -> None:
    """``--force``: replacing an existing output is meant (only one of our own kind)."""
    p.add_argument("--force", action="store_true", help=f"replace {what} (never an input or a foreign file)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model CKPT --device D --precision P --batch-size N --tta --backend B --compile``."""
    p.add_argument(
        "--model", "-m", required=True, metavar="CKPT", help="checkpoint file, or an .onnx from export-onnx"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA→MPS→CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument(
        "--batch-size",
        type=int_in("--batch-size", 1, MAX_BATCH),
        default=8,
        help="slices/tiles per forward pass",
    )
    p.add_argument("--tta", action="store_true", help="average over horizontal/vertical flips")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnxruntime"],
        help="what runs the network: auto (onnxruntime for .onnx, else torch), torch, onnxruntime",
    )
    add_compile_arg(p)


def add_compile_arg(p: argparse.ArgumentParser) -> None:
    """``--compile``: ``Segmenter(compile=True)``."""
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network (PyTorch backend; eager with a warning where it cannot compile)",
    )


def segmenter_spec(args: argparse.Namespace) -> SegmenterSpec:
    """The ``--model`` arguments as a :class:`SegmenterSpec` (what ``tile`` hands to each Dask worker)."""
    return SegmenterSpec(
        args.model, args.device, args.precision, args.batch_size, args.tta, args.backend, args.compile
    )


def load_segmenter(args: argparse.Namespace) -> Segmenter:
    """A :class:`Segmenter` from the ``--model`` arguments (``from_checkpoint``'s ``InputError``)."""
    return segmenter_spec(args).build()


def check_output(path: str | Path) -> Path:
    """Fail early (before any work) when the output's folder is missing or not writable.

    Kept for callers that only need that; commands declare their outputs to
    :func:`segnet_domains.io.safety.check_outputs`, which checks this and more.
    """
    from segnet_domains.io.safety import FileOutput, check_outputs

    check_outputs([], [FileOutput(path, exists="ours")])
    return Path(path)
