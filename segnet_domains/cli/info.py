"""``segnet-domains info CKPT``: print a checkpoint's metadata as JSON."""

from __future__ import annotations

import argparse
import json

from segnet_domains.checkpoint import verify_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print a checkpoint's metadata as JSON")
    p.add_argument("checkpoint", help="checkpoint file (.pt, safetensors)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(verify_checkpoint(args.checkpoint).to_dict(), indent=2))  # weights table checked too
    return 0
