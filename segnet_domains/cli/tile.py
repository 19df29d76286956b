"""``tile``: segment satellite/aerial scenes of any size into Cloud-Optimized GeoTIFFs."""

from __future__ import annotations

import argparse
import sys

from segnet_domains.checkpoint import read_info
from segnet_domains.cli.common import add_force_arg, add_model_args, int_in, segmenter_spec
from segnet_domains.errors import InputError
from segnet_domains.geo.batch import run_batch
from segnet_domains.geo.tiler import TileOptions
from segnet_domains.inference import resolve_backend

#: Largest tile edge, Monte Carlo sample count and local worker count accepted.
MAX_TILE = 8192
MAX_SAMPLES = 1000
MAX_WORKERS = 256


def _bands(text: str) -> list[int]:
    try:
        bands = [int(b) for b in text.replace(" ", "").split(",") if b]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bands must be 1-based numbers like 1,2,3 (got {text!r})") from None
    if not bands or min(bands) < 1:
        raise argparse.ArgumentTypeError(f"bands must be 1-based numbers like 1,2,3 (got {text!r})")
    return bands


def _assets(text: str) -> list[str]:
    assets = [a for a in text.replace(" ", "").split(",") if a]
    if not assets:
        raise argparse.ArgumentTypeError(f"assets must be names like red,green,blue (got {text!r})")
    return assets


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tile",
        help="segment big rasters window by window into COG label maps (batch, resume, Dask)",
        description=(
            "Segment GeoTIFF (any GDAL raster) scenes of any size, local or remote (https://, s3://, "
            "/vsi... paths; STAC items with --assets). Writes DIR/<stem>_labels.tif "
            "(uint8 COG, same size/CRS/transform, colour table); reruns skip finished scenes and "
            "continue interrupted ones; DIR/tile-run-<time>.json summarises each run."
        ),
    )
    p.add_argument(
        "scenes",
        nargs="+",
        metavar="SCENE",
        help="rasters (paths, https:// or s3:// URLs, /vsi... paths), STAC items (.json file or URL), "
        "glob patterns, or .txt lists of these",
    )
    p.add_argument("--out-dir", "-o", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument(
        "--tile", type=int, metavar="N", help="tile edge in pixels (default: checkpoint's, else 512)"
    )
    p.add_argument(
        "--overlap", type=int, metavar="N", help="overlap between tiles (default: checkpoint's, else tile/4)"
    )
    p.add_argument(
        "--bands", type=_bands, metavar="1,2,3", help="1-based bands to use (default: from checkpoint)"
    )
    p.add_argument(
        "--assets",
        type=_assets,
        metavar="red,green,blue",
        help="STAC items: the assets (keys or eo:bands common names) to stack as bands, in order",
    )
    p.add_argument(
        "--nodata", type=float, metavar="V", help="nodata value for scenes that do not declare one"
    )
    p.add_argument("--proba", action="store_true", help="also write <stem>_proba.tif (uint8 per class)")
    p.add_argument("--uncertainty", action="store_true", help="also write Monte Carlo dropout variance")
    p.add_argument(
        "--samples", type=int_in("--samples", 1, MAX_SAMPLES), default=8, metavar="N",
        help="Monte Carlo samples (default 8)",
    )  # fmt: skip
    p.add_argument("--summary", metavar="JSON", help="run summary path (default DIR/tile-run-<time>.json)")
    add_force_arg(p, "finished outputs or interrupted work of a run with other settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    dist = p.add_mutually_exclusive_group()
    dist.add_argument(
        "--workers",
        type=int_in("--workers", 1, MAX_WORKERS),
        metavar="N",
        help="run scenes on a local Dask cluster of N processes",
    )
    dist.add_argument("--scheduler", metavar="ADDR", help="run on an existing Dask cluster (tcp://HOST:PORT)")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    info = read_info(args.model)  # a bad checkpoint fails before anything else
    if args.uncertainty:
        info.require_dropout(args.model, "--uncertainty")
    if args.tile is not None and not 2 <= args.tile <= MAX_TILE:
        raise InputError(None, f"--tile must be in [2, {MAX_TILE}] (got {args.tile})")
    if args.overlap is not None and args.overlap < 0:
        raise InputError(None, f"--overlap must be 0 or more (got {args.overlap})")
    tile = args.tile or info.tile_size
    if tile and args.overlap is not None and args.overlap >= tile:
        raise InputError(
            None, f"--overlap must be in [0, {tile}) for {tile}-pixel tiles (got {args.overlap})"
        )
    if args.uncertainty and resolve_backend(args.model, args.backend) != "torch":
        raise InputError(args.model, "--uncertainty (Monte Carlo dropout) needs --backend torch")
    spec = segmenter_spec(args)
    options = TileOptions(
        tile_size=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        bands=args.bands,
        assets=args.assets,
        nodata=args.nodata,
        proba=args.proba,
        uncertainty=args.uncertainty,
        samples=args.samples,
        force=args.force,
    )
    try:
        summary = run_batch(
            spec,
            args.scenes,
            args.out_dir,
            options,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=not args.no_progress,
            summary=args.summary,
        )
    except ValueError as exc:  # e.g. an overlap not smaller than the tile
        raise InputError(None, str(exc)) from None
    for row in summary.scenes:
        if row.status == "failed":
            print(f"error: {row.error}", file=sys.stderr)
    counts = ", ".join(f"{n} {status}" for status, n in summary.counts().items())
    print(f"{len(summary.scenes)} scene(s): {counts}; summary {summary.path}")
    return 1 if summary.failed else 0
