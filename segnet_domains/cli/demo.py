"""``segnet-domains demo [--out DIR]``: the three jobs end to end on generated data."""

from __future__ import annotations

import argparse
from pathlib import Path

from segnet_domains.demo.run import DOMAINS, demo_output, run_demo
from segnet_domains.io.safety import check_outputs, folder_lock


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate data, train, segment and score all three domains")
    p.add_argument("--out", "-o", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one short epoch (a smoke test)")
    p.add_argument("--device", default="auto")
    p.add_argument("--only", nargs="+", choices=list(DOMAINS), default=[], help="run only these domains")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_outputs([], [demo_output(args.out)])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, "demo"):
        summary = run_demo(out, quick=args.quick, device=args.device, domains=tuple(args.only))
    print(f"\nwrote {args.out}/summary.json (total {summary['seconds']['total']:.0f} s)")
    return 0
