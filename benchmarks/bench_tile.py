"""Raster tiling: throughput vs the raw model, peak memory vs scene size, our tiler vs MONAI's.

Three measurements, each against a baseline taken in the same run:

1. **Throughput** — ``tile_scene`` (windowed rasterio reads, scene-wide
   normalisation, batches, blending, COG writing) on a 3-band uint16
   GeoTIFF, in megapixels of model work per second, against the raw model
   (``Segmenter.forward``) on the *same number and shapes of tiles* held in
   memory. Overlap is counted as model work on both sides, so the ratio is
   the share of the model's speed the streaming keeps (target ≥ 0.85).
2. **Peak memory** — peak RSS of a fresh process tiling a 2048² and an
   8192² scene (16× the pixels); target growth ≤ 1.10× (issue #16), also
   beside ``--busy`` CPU-bound processes; the medians of ``--rss-repeats``
   alternating processes per size (one process's peak varies by ±45 MB on
   a 2-core VM, as much as the whole growth target). The blender keeps only
   the rows two tile rows share (``classes × overlap × width``; tiles spread
   evenly, so about ``overlap`` rows): O(overlap × width), ~10 MB more at
   8192 px wide for 4 classes. What else grows is as wide as a batch of
   tiles, so it stops growing once a tile row holds a whole batch: the
   blender's in-progress block and the reader's windows (a 2048² row has 5
   tiles, a batch 8). Batches wait in the file's dtype.
   ``--huge 40000`` tiles one 40000² scene the same way.
3. **Tiler vs MONAI** — :meth:`~segnet_domains.inference.Segmenter.predict_proba_tiled`
   against ``monai.inferers.sliding_window_inference`` on the same
   in-memory image, with the same predictor (``Segmenter.forward``), tile
   size, batch size and overlap (0.25 = 128 of 512 px); both blend with
   smooth windows (ours cosine, MONAI Gaussian). Target: ours at least as fast.

On a 2-core CPU the paper's SegNet (64…512 channels) needs minutes per
8192² scene, so the model is a reduced-width SegNet (``--features``,
default 8,16,32,64,64); throughput is measured on ``--size`` (default
4096², ``--size 8192`` for the full figure). Both sides are warmed up
first (the tiler's first, cold run is reported apart); runs then alternate
(raw, tiled, raw, …, raw) and medians are reported, so load from other
processes hits both sides alike; the throughput ratio is the median over tiled runs of
the mean of the two raw runs beside each against it (a shared virtual
machine's speed drifts by 1.5× within minutes: a run is compared with its
neighbours, not with a median taken at other times).

Everything runs on ``--device`` (CPU by default; ``auto``: CUDA when present).
The raw model's time comes back through ``Segmenter.forward``, which returns
host memory, so it is synchronised with the device.

Usage::

    python benchmarks/bench_tile.py [--device cpu|cuda|auto] [--size 4096] [--repeats 3] [--json OUT]
    python benchmarks/bench_tile.py --huge 40000      # one 40000² scene: peak RSS and time
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, add_common_args, pick_device

from segnet_domains import Segmenter, SegNet, save_checkpoint
from segnet_domains._openmp import passive_waiting
from segnet_domains.geo.tiler import TileOptions, tile_scene
from segnet_domains.runtime import usable_cores
from segnet_domains.synthetic.layouts import geotiff_profile as profile
from segnet_domains.tiling import TileGrid, tile_batches
from tests.data.geo import BAND_NAMES, CLASS_NAMES, make_scene

TILE, OVERLAP, BATCH = 512, 128, 8


def make_big_scene(path: Path, size: int, tmp: Path) -> Path:
    """A ``size``² 3-band uint16 UTM GeoTIFF made of 1024² generated blocks (written window by window)."""
    block, _ = make_scene(tmp / "block.tif", 1024, 1024, bands=3, border=False)
    with rasterio.open(block) as src:
        data = src.read()
    prof = profile(size, size, 3, "uint16", nodata=0, blocksize=512)
    if size > 16384:  # BigTIFF past 4 GB; fast DEFLATE so that writing it takes minutes, not tens
        prof.update(bigtiff="yes", zlevel=1, num_threads="all_cpus")
    with rasterio.open(path, "w", **prof) as dst:
        dst.descriptions = tuple(BAND_NAMES[:3])
        for r in range(0, size, 1024):
            for c in range(0, size, 1024):
                h, w = min(1024, size - r), min(1024, size - c)
                flip = data[:, ::-1] if (r // 1024 + c // 1024) % 2 else data  # no exact repeats
                dst.write(flip[:, :h, :w], window=Window(c, r, w, h))
    return path


def checkpoint(path: Path, features: list[int]) -> Path:
    torch.manual_seed(0)
    model = SegNet(3, len(CLASS_NAMES), features=features)
    return save_checkpoint(
        path,
        model,
        class_names=CLASS_NAMES,
        band_names=BAND_NAMES[:3],
        domain="aerial",
        normalization={"mode": "percentile", "lower": 1.0, "upper": 99.0},
        tile_size=TILE,
        tile_overlap=OVERLAP,
    )


def scene_tiles(seg: Segmenter, scene: Path, n: int) -> np.ndarray:
    """``n`` real tiles of the scene, normalised (realistic values for the raw-model baseline)."""
    from segnet_domains.adapters import Normalizer

    with rasterio.open(scene) as src:
        block = src.read(window=Window(0, 0, min(src.width, TILE * n), TILE))
    x = Normalizer(seg.info.normalization)(block)
    tiles = [x[:, :, j * TILE : (j + 1) * TILE] for j in range(x.shape[2] // TILE)]
    return np.stack([tiles[j % len(tiles)] for j in range(n)])


def raw_model_seconds(seg: Segmenter, grid: TileGrid, tiles: np.ndarray) -> float:
    """The model alone on the scene's tiles (same count, shapes and batches), inputs already in memory."""
    total = 0.0
    for i in range(grid.shape[0]):
        for chunk in tile_batches(grid.row(i), BATCH):
            batch = tiles[: len(chunk), :, : chunk[0].height, : chunk[0].width]
            t = time.perf_counter()
            seg.forward(batch)
            total += time.perf_counter() - t
    return total


def timed_with_cpu(fn: Callable[[], float | None]) -> tuple[float, float]:
    """``(seconds, CPU seconds of the whole process)`` of ``fn()``, all threads' CPU time.

    The seconds are what ``fn`` returns if it times itself, else its wall time.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    own = fn()
    return (time.perf_counter() - wall if own is None else own), time.process_time() - cpu


def throughput(ckpt: Path, scene: Path, out: Path, repeats: int, device: str = "cpu") -> dict:
    """Tiled against raw, in alternation, both sides warmed up (the tiler's first run is reported apart).

    The raw side's warm-up is a forward pass and the run before the first
    tiled one; the tiled side's is one whole scene before the timed runs, so
    its first-use costs (the blender's and the reader's buffers growing the
    heap, GDAL's first open, oneDNN kernels for the last, smaller batch) are
    not charged to one of the ratios: they are ``first_tile_seconds``.

    On a CPU the process's CPU time is recorded beside the wall time: the
    tiled run's CPU seconds beyond the raw run's are the tiler's own work
    (reading, normalising, blending, encoding, writing), and
    ``ratio_bound_cores`` is the ratio a tiler with that much extra work would
    reach if all of it ran in core time the model leaves idle (the raw time
    over the tiled CPU time spread over the cores the process may use, at
    most 1); ``raw_cores_busy`` is the raw run's CPU time over the model's
    own time. Meaningful with
    passive OpenMP waits (``openmp_passive_waiting``), where idle threads
    sleep instead of burning CPU time.
    """
    seg = Segmenter.from_checkpoint(ckpt, device=device, batch_size=BATCH)
    with rasterio.open(scene) as src:
        h, w = src.height, src.width
    grid = TileGrid.create(h, w, TILE, OVERLAP, align=seg.multiple)
    work_mp = sum(t.height * t.width for t in grid) / 1e6
    tiles = scene_tiles(seg, scene, BATCH)

    def tiled() -> None:
        for f in out.glob("*"):
            f.unlink()
        tile_scene(seg, scene, out, TileOptions(tile_size=TILE, overlap=OVERLAP, batch_size=BATCH))

    def raw() -> float:
        return raw_model_seconds(seg, grid, tiles)

    seg.forward(tiles)  # warm-up of the raw side
    first, _ = timed_with_cpu(tiled)  # warm-up of the tiled side
    raw_runs = [timed_with_cpu(raw)]
    tiled_runs: list[tuple[float, float]] = []
    for _ in range(repeats):  # raw, tile, raw, tile, …, raw: each tiled run between two raw ones
        tiled_runs.append(timed_with_cpu(tiled))
        raw_runs.append(timed_with_cpu(raw))
    tiled_s, raw_s = [t for t, _ in tiled_runs], [t for t, _ in raw_runs]
    t_tile, t_raw = statistics.median(tiled_s), statistics.median(raw_s)
    # this machine's speed drifts over seconds (shared host): each tiled run against the raw runs beside it
    paired = [(raw_s[k] + raw_s[k + 1]) / 2 / tiled_s[k] for k in range(repeats)]
    res = {
        "scene": f"{h}x{w}x3 uint16",
        "tiles": len(grid),
        "model_work_mp": round(work_mp, 1),
        "first_tile_seconds": round(first, 2),
        "tile_seconds": round(t_tile, 2),
        "raw_seconds": round(t_raw, 2),
        "tile_runs": [round(v, 2) for v in tiled_s],
        "raw_runs": [round(v, 2) for v in raw_s],
        "tile_mp_per_s": round(work_mp / t_tile, 2),
        "raw_mp_per_s": round(work_mp / t_raw, 2),
        "scene_mp_per_s": round(h * w / 1e6 / t_tile, 2),
        "ratio": round(statistics.median(paired), 3),
        "ratio_of_medians": round(t_raw / t_tile, 3),
    }
    if seg.device.type == "cpu":
        cores = usable_cores()
        cpu_tile = statistics.median(c for _, c in tiled_runs)
        cpu_raw = statistics.median(c for _, c in raw_runs)
        res |= {
            "openmp_passive_waiting": passive_waiting(),
            "tile_cpu_seconds": round(cpu_tile, 2),
            "raw_cpu_seconds": round(cpu_raw, 2),
            "tiler_own_cpu_seconds": round(cpu_tile - cpu_raw, 2),
            "raw_cores_busy": round(cpu_raw / t_raw, 2),
            "ratio_bound_cores": round(min(1.0, t_raw / (cpu_tile / cores)), 3),
        }
    return res


# Peak RSS from VmHWM (this process's own peak; ru_maxrss would inherit the parent's across exec).
# The scenes are made by the parent: the child (a new process image) only tiles. With ROWS > 0 it stops
# once that many tile rows are on disk (the stream's memory is steady from the second row on).
RSS_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[4])
from segnet_domains import Segmenter
from segnet_domains.geo.tiler import TileOptions, iter_tile_scene
seg = Segmenter.from_checkpoint(sys.argv[1], device=sys.argv[6], batch_size=int(sys.argv[5]))
overlap, rows = int(sys.argv[7]), int(sys.argv[8])
t = time.perf_counter()
steps = iter_tile_scene(seg, sys.argv[2], sys.argv[3], TileOptions(tile_size=512, overlap=overlap))
for step in steps:
    if rows and step.rows_done >= rows:
        steps.close()
        break
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(status, time.perf_counter() - t)
"""


def tile_in_fresh_process(
    ckpt: Path, scene: Path, out: Path, batch: int, device: str = "cpu", overlap: int = OVERLAP, rows: int = 0
) -> tuple[float, float]:
    """``(peak RSS in MiB, seconds)`` of ``tile_scene`` in a new Python process (``rows``: stop after)."""
    out.mkdir(exist_ok=True)
    args = [str(ckpt), str(scene), str(out), str(ROOT), str(batch), device, str(overlap), str(rows)]
    proc = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    kib, seconds = proc.stdout.strip().splitlines()[-1].split()
    return int(kib) / 1024, float(seconds)  # KiB → MiB (Linux)


def peak_rss(args: argparse.Namespace, tmp: Path, scene: Path, dev: str) -> dict:
    """Peak RSS of fresh processes tiling a 2048² and an 8192² scene (growth), quiet and beside busy ones."""
    features = [int(f) for f in (args.rss_features or args.features).split(",")]
    ckpt = checkpoint(tmp / "rss.pt", features)
    small = make_big_scene(tmp / "s2048.tif", 2048, tmp)
    big = scene if args.size == 8192 else make_big_scene(tmp / "s8192.tif", 8192, tmp)
    out: dict = {"features": features, "batch_size": args.rss_batch, "overlap": args.rss_overlap}
    out["rows"] = args.rss_rows or "all"
    for busy in sorted({0, args.busy}):
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        runs: dict[str, list[float]] = {"2048": [], "8192": []}
        try:
            for r in range(max(1, args.rss_repeats)):  # alternating: drift and load hit both sizes alike
                for size, s in zip(runs, (small, big)):
                    # a folder per run: in one already used, a run would resume or skip the scene
                    o, rows = tmp / f"rss{s.stem}_{busy}_{r}", args.rss_rows
                    runs[size].append(
                        tile_in_fresh_process(ckpt, s, o, args.rss_batch, dev, args.rss_overlap, rows)[0]
                    )
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        small_mb, big_mb = (statistics.median(runs[size]) for size in runs)
        out["quiet" if busy == 0 else f"beside_{busy}_busy"] = {
            "2048_mb": round(small_mb),
            "8192_mb": round(big_mb),
            "growth": round(big_mb / small_mb, 3),
            "2048_runs_mb": [round(v) for v in runs["2048"]],
            "8192_runs_mb": [round(v) for v in runs["8192"]],
        }
    return out


def huge_scene(ckpt: Path, size: int, tmp: Path, batch: int, device: str = "cpu") -> dict:
    """Tile one ``size``² scene (40000² in issue 4) in a fresh process; peak RSS vs a 2048² scene."""
    t = time.perf_counter()
    scene = make_big_scene(tmp / f"s{size}.tif", size, tmp)
    made = time.perf_counter() - t
    small = make_big_scene(tmp / "s2048.tif", 2048, tmp)
    base_mb, _ = tile_in_fresh_process(ckpt, small, tmp / "huge_small", batch, device)
    mb, seconds = tile_in_fresh_process(ckpt, scene, tmp / "huge_out", batch, device)
    with rasterio.open(tmp / "huge_out" / f"{scene.stem}_labels.tif") as out:
        written = {
            "shape": [out.height, out.width],
            "overviews": out.overviews(1),
            "crs": str(out.crs.to_epsg()),
        }
    return {
        "scene": f"{size}x{size}x3 uint16",
        "scene_gb_on_disk": round(scene.stat().st_size / 1e9, 2),
        "make_seconds": round(made),
        "batch_size": batch,
        "peak_rss_mb": round(mb),
        "peak_rss_2048_mb": round(base_mb),
        "growth": round(mb / base_mb, 3),
        "tile_seconds": round(seconds),
        "scene_mp_per_s": round(size * size / 1e6 / seconds, 2),
        "output": written,
    }


def versus_monai(ckpt: Path, size: int, repeats: int, device: str = "cpu") -> dict:
    from monai.inferers import sliding_window_inference

    from segnet_domains.adapters import ImageAdapter

    seg = Segmenter.from_checkpoint(ckpt, device=device, batch_size=BATCH)
    rng = np.random.default_rng(1)
    image = rng.integers(100, 3000, (3, size, size)).astype(np.uint16)

    def ours() -> np.ndarray:
        return seg.predict_proba_tiled(image, TILE, OVERLAP, BATCH)

    def monai() -> np.ndarray:
        x = torch.from_numpy(ImageAdapter(3, seg.info.normalization)(image))[None]  # same normalisation
        with torch.inference_mode():
            out = sliding_window_inference(
                x, (TILE, TILE), BATCH, seg.forward, overlap=OVERLAP / TILE, mode="gaussian", progress=False
            )
        return out[0].numpy()

    agree = float((ours().argmax(0) == monai().argmax(0)).mean())  # also the warm-up
    t_ours, t_monai = [], []
    for _ in range(repeats):
        for fn, times in ((ours, t_ours), (monai, t_monai)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    a, b = statistics.median(t_ours), statistics.median(t_monai)
    return {
        "image": f"{size}x{size}x3",
        "ours_seconds": round(a, 2),
        "monai_seconds": round(b, 2),
        "speedup": round(b / a, 3),
        "label_agreement": round(agree, 4),
    }


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096, help="throughput scene edge (8192 for the full figure)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--features", default="8,16,32,64,64")
    ap.add_argument("--monai-size", type=int, default=2048)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-monai", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--rss-features", help="SegNet widths of the RSS runs (default: --features)")
    ap.add_argument("--rss-overlap", type=int, default=OVERLAP, help="overlap of the RSS runs")
    ap.add_argument("--rss-rows", type=int, default=0, help="stop the RSS runs after this many tile rows")
    ap.add_argument("--busy", type=int, default=0, help="also measure RSS beside N CPU-bound processes")
    ap.add_argument(
        "--rss-repeats",
        type=int,
        default=3,
        help="fresh processes per scene size (medians: one process's peak varies by ±45 MB on 2 cores)",
    )
    ap.add_argument(
        "--rss-batch",
        type=int,
        default=4,
        help="batch size of the RSS runs (4: full batches on both scenes; a 2048² row has only 5 tiles)",
    )
    ap.add_argument(
        "--huge",
        type=int,
        metavar="SIZE",
        help="only tile one SIZE² scene (e.g. 40000: ~9.6 GB of pixels) and report its peak RSS",
    )
    ap.add_argument("--tmp", help="scratch folder (the --huge scene needs a few GB)")
    ap.add_argument("--json", help="also write the figures here")
    add_common_args(ap)
    args = ap.parse_args()
    dev = str(pick_device(args.device))
    features = [int(f) for f in args.features.split(",")]
    report: dict = {"features": features, "device": dev, "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        tmp = Path(d)
        ckpt = checkpoint(tmp / "bench.pt", features)
        if args.huge:
            report["huge"] = huge_scene(ckpt, args.huge, tmp, args.rss_batch, dev)
            print("huge scene:", json.dumps(report["huge"]), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(report, indent=2))
            return report
        scene = make_big_scene(tmp / "scene.tif", args.size, tmp)
        (tmp / "out").mkdir()
        if not args.skip_throughput:
            report["throughput"] = throughput(ckpt, scene, tmp / "out", args.repeats, dev)
            print("throughput:", json.dumps(report["throughput"]), flush=True)
        if not args.skip_rss:
            report["peak_rss"] = peak_rss(args, tmp, scene, dev)
            print("peak RSS:", json.dumps(report["peak_rss"]), flush=True)
        if not args.skip_monai:
            report["vs_monai"] = versus_monai(ckpt, args.monai_size, args.repeats, dev)
            print("vs MONAI sliding_window_inference:", json.dumps(report["vs_monai"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
