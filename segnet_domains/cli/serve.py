"""``serve``: the web demo — a page and an HTTP API that segment uploaded images, volumes and scenes."""

from __future__ import annotations

import argparse

from segnet_domains.cli.common import add_compile_arg
from segnet_domains.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="the web demo: a page (and /api) that segments uploaded images, NIfTI volumes, GeoTIFF scenes",
        description=(
            "Serve checkpoints on a local web page and HTTP API (GET /api/models, POST /api/predict). "
            "Without --model, serves the checkpoints `make demo` trained (DEMO_DIR/models/*/best.pt)."
        ),
    )
    p.add_argument(
        "--model",
        "-m",
        action="extend",
        nargs="+",
        metavar="CKPT",
        help="checkpoint(s) to serve (repeatable)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1: this machine)"
    )
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    p.add_argument(
        "--demo-dir", default="demo_out", help="where `make demo` wrote its models (default demo_out)"
    )
    p.add_argument("--max-upload-mb", type=float, default=512, help="largest upload in MB (default: 512)")
    p.add_argument("--samples", type=int, default=8, help="Monte Carlo passes for uncertainty (default: 8)")
    p.add_argument("--device", default="auto", help="auto (CUDA→MPS→CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, default=8, help="slices/tiles per forward pass")
    add_compile_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segnet_domains.web.models import ModelRegistry, demo_checkpoints

    paths = args.model or demo_checkpoints(args.demo_dir)
    if not paths:
        raise InputError(
            None,
            f"no checkpoints to serve: none in {args.demo_dir}/models/ — run `make serve` (trains the demo "
            "models first), `make demo`, or pass --model CKPT",
        )
    if args.samples < 2:
        raise InputError(None, f"--samples must be at least 2 (got {args.samples})")
    try:
        import uvicorn

        from segnet_domains.web.app import create_app
    except ImportError as exc:
        raise InputError(
            None,
            f"the web demo needs FastAPI and uvicorn ({exc.name} is missing): "
            "pip install 'segnet-domains[web]'",
        ) from None
    registry = ModelRegistry.from_checkpoints(
        paths, args.device, args.precision, args.batch_size, compile=args.compile
    )
    app = create_app(registry, max_upload=int(args.max_upload_mb * 2**20), mc_samples=args.samples)
    names = ", ".join(registry.models)
    url = f"http://{args.host}:{args.port}/"
    print(f"serving {len(registry.models)} model(s) ({names}) at {url}  (Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
