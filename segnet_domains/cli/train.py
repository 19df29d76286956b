"""``segnet-domains train CONFIG [--data-root DIR] [--out DIR] [--resume] [--set key=value ...]``."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from segnet_domains.cli.common import add_force_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train SegNet from a YAML config (ATLAS, RITE, aerial pipelines)",
        description="Train with the shared MONAI engine. Writes OUT/best.pt, OUT/last.pt and "
        "OUT/metrics.jsonl. Under torchrun it runs DistributedDataParallel.",
    )
    p.add_argument("config", help="YAML config, e.g. pipelines/configs/atlas_lesion.yaml")
    p.add_argument("--data-root", help="dataset folder (overrides data.root)")
    p.add_argument("--out", help="run folder (overrides out)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    add_force_arg(p, "an earlier run in OUT (best.pt, last.pt, metrics.jsonl)")
    p.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override config values, e.g. --set train.epochs=1 model.features=[8,16,32,64,64]",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segnet_domains.io.safety import check_outputs, folder_lock
    from segnet_domains.training import build_config, train
    from segnet_domains.training.state import run_output

    config = build_config(args.config, args.overrides, data_root=args.data_root, out=args.out)
    out = Path(config["out"])
    inputs = [args.config, config["data"].get("root")]
    check_outputs(inputs, [run_output(out, resume=args.resume)], force=args.force)
    with contextlib.ExitStack() as stack:
        if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 writes (and locks)
            out.mkdir(parents=True, exist_ok=True)
            stack.enter_context(folder_lock(out, "train"))
        result = train(config, resume=args.resume)
    last = result.history[-1] if result.history else {}
    print(
        f"done: {result.epochs} epochs; best {result.best}, last {result.last}; final loss {last.get('loss')}"
    )
    return 0
