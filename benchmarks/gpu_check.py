"""One device's whole speed picture in one short run (``make bench-gpu``), each figure against its baseline.

Measured in the same process, every timing synchronised with the device:

1. ``peak`` — bf16 matrix-multiply peak (4096², TFLOP/s; on a CPU in the
   network's precision): the roof the network is compared with.
2. ``network_bN`` — SegNet(3, 12) at 360×480, the network alone (fused BN,
   channels-last, the Segmenter's precision) at batch 1 and 16: ms per frame
   and fraction of the bf16 peak (FLOPs counted by ``torch.utils.flop_counter``).
3. ``predict_proba`` — ``Segmenter.predict_proba`` end to end at batch 1 (uint8
   frame in, probabilities out) / the network alone at batch 1.
4. ``predict_volume`` — ``Segmenter.predict_volume`` on a 197×233×189 volume /
   the network alone over the same slices, prepared on the device beforehand.
5. ``tile`` — ``tile_scene`` on a 4096² 3-band uint16 GeoTIFF (SegNet 64…512,
   tile 512, overlap 128, batch 8) against the network alone on the same tiles:
   fraction of the raw speed. Without rasterio: the in-memory tiler
   (``predict_proba_tiled``), said so.
6. ``train`` — training steps (engine's padded autocast forward, Dice + CE,
   SGD) in slices/s at batch 8 of 224×192 / a plain step (forward, CE,
   backward, SGD) of the same network.
7. ``normalize_*`` — the percentile normalisation, old (MONAI's sorts) against
   new (linear time) on the host and on the device, with their differences
   (``bench_normalize.py``): the int16 volume and the uint16 scene.
8. ``compile_bN`` — the network under ``torch.compile`` at batch 1 and 16
   (last: compiling takes the longest).

Each section prints its line as soon as it is measured (flushed) and
rewrites ``--json``; a section that fails prints its error and the run goes
on, so a time-out or a missing optional package still returns the rest.
``--device cpu --quick`` runs the same code on small sizes (tested in CI).

Usage::

    python benchmarks/gpu_check.py --device auto [--json OUT]       # CUDA when present; < 5 min on one H200
    python benchmarks/gpu_check.py --device cpu --quick [--json OUT] # seconds, small sizes
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    Report,
    add_common_args,
    alternate,
    machine,
    median,
    network,
    pick_device,
    prepared,
)

from segnet_domains import Segmenter, SegNet
from segnet_domains.adapters import VolumeSliceAdapter
from segnet_domains.checkpoint import make_info

PAPER = (64, 128, 256, 512, 512)
SMALL = (8, 16, 32, 64, 64)


@dataclass(frozen=True)
class Sizes:
    """The sizes of one run: the full GPU set, or ``--quick`` for a CPU check."""

    features: tuple[int, ...] = PAPER
    frame: tuple[int, int] = (360, 480)
    batches: tuple[int, int] = (1, 16)
    volume: tuple[int, int, int] = (197, 233, 189)
    scene: int = 4096
    tile: int = 512
    overlap: int = 128
    tile_batch: int = 8
    train_hw: tuple[int, int] = (224, 192)
    train_batch: int = 8
    matmul: int = 4096
    repeats: int = 5
    warmup: int = 2


QUICK = Sizes(SMALL, (64, 96), (1, 4), (32, 40, 8), 256, 128, 32, 4, (64, 64), 2, 256, 2, 1)


def matmul_peak(
    dev: torch.device, dtype: torch.dtype, n: int, repeats: int, report: Report, warmup: int = 2
) -> float:
    """TFLOP/s of an ``n``² matmul in ``dtype`` (bf16 on a GPU; on a CPU the network's own precision)."""
    a, b = (torch.randn(n, n, device=dev, dtype=dtype) for _ in range(2))
    s = median(alternate({"mm": lambda: a @ b}, dev, max(repeats, 3), warmup=warmup)["mm"])
    tflops = 2 * n**3 / s / 1e12
    name = str(dtype).removeprefix("torch.")
    report.add("peak", f"{name} matmul {n}² {tflops:.4g} TFLOP/s", n=n, dtype=name, tflops=round(tflops, 4))
    return tflops


def frame_segmenter(dev: torch.device, sizes: Sizes) -> Segmenter:
    torch.manual_seed(0)
    model = SegNet(3, 12, features=list(sizes.features))
    info = make_info(model, normalization={"mode": "percentile", "lower": 0.5, "upper": 99.5})
    return Segmenter(model, device=dev, info=info, batch_size=sizes.batches[1])


def flops_per_frame(seg: Segmenter, sizes: Sizes) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = prepared(seg, torch.zeros(1, 3, *sizes.frame))
    with FlopCounterMode(display=False) as counter:
        network(seg, x)()
    return float(counter.get_total_flops())


def networks(seg: Segmenter, sizes: Sizes, peak: float | None, report: Report, tag: str = "network") -> dict:
    """ms per frame of the network alone at both batch sizes (and fraction of the matmul peak)."""
    flops = flops_per_frame(seg, sizes)
    out = {}
    for b in sizes.batches:
        run = network(seg, prepared(seg, torch.rand(b, 3, *sizes.frame)))
        ms = median(alternate({"net": run}, seg.device, sizes.repeats, sizes.warmup)["net"]) * 1000 / b
        frac = (flops / (ms / 1000) / 1e12) / peak if peak else None
        line = f"batch {b}: {ms:.3f} ms/frame" + (f", {frac:.3f} of the matmul peak" if frac else "")
        out[b] = report.add(f"{tag}_b{b}", line, batch=b, ms_per_frame=round(ms, 4), fraction_of_peak=frac)
    return out


def predict_proba(seg: Segmenter, sizes: Sizes, report: Report) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (*sizes.frame, 3), dtype=np.uint8)
    raw = network(seg, prepared(seg, torch.rand(1, 3, *sizes.frame)))
    t = alternate(
        {"raw": raw, "e2e": lambda: seg.predict_proba(frame)}, seg.device, sizes.repeats, sizes.warmup
    )
    r, e = median(t["raw"]) * 1000, median(t["e2e"]) * 1000
    report.add(
        "predict_proba",
        f"{e:.2f} ms/frame end to end vs {r:.2f} ms network: ratio {e / r:.2f} (target ≤ 1.15)",
        ms=round(e, 3),
        raw_ms=round(r, 3),
        ratio=round(e / r, 3),
    )


def predict_volume(dev: torch.device, sizes: Sizes, report: Report) -> None:
    torch.manual_seed(0)
    model = SegNet(1, 2, features=list(sizes.features))
    info = make_info(model, domain="mri", slice_axis=2, class_names=["background", "lesion"])
    seg = Segmenter(model, device=dev, info=info, batch_size=sizes.tile_batch)
    vol = np.random.default_rng(0).integers(0, 1200, sizes.volume).astype(np.int16)
    adapter = VolumeSliceAdapter(2, seg.info.context, seg.info.normalization)
    slices = adapter.prepare(vol)
    batches = [prepared(seg, torch.from_numpy(b)) for _, b in adapter.batches(slices, seg.batch_size)]

    def raw() -> None:
        with torch.inference_mode():
            for x in batches:
                seg.backend(x)

    t = alternate(
        {"raw": raw, "full": lambda: seg.predict_volume(vol, axis=2)}, dev, max(2, sizes.repeats // 2)
    )
    r, f = median(t["raw"]), median(t["full"])
    shape = "×".join(map(str, sizes.volume))
    report.add(
        "predict_volume",
        f"{shape}: {f:.3f} s vs {r:.3f} s network: ratio {f / r:.2f} (target ≤ 1.10)",
        seconds=round(f, 4),
        raw_seconds=round(r, 4),
        ratio=round(f / r, 3),
    )


def _write_scene(path: Path, size: int) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    block = (rng.gamma(2.0, 600.0, (3, 512, 512)) + 1).astype(np.uint16)
    prof = {
        "driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint16", "nodata": 0,
        "crs": "EPSG:32633", "transform": from_origin(500000, 5000000, 0.5, 0.5),
        "tiled": True, "blockxsize": 512, "blockysize": 512,
    }  # fmt: skip
    with rasterio.open(path, "w", **prof) as dst:
        for r in range(0, size, 512):
            for c in range(0, size, 512):
                h, w = min(512, size - r), min(512, size - c)
                dst.write(block[:, :h, :w], window=rasterio.windows.Window(c, r, w, h))
    return path


def tile(dev: torch.device, sizes: Sizes, tmp: Path, report: Report) -> None:
    from segnet_domains.tiling import TileGrid, tile_batches

    torch.manual_seed(0)
    model = SegNet(3, 4, features=list(sizes.features))
    info = make_info(
        model, domain="aerial", normalization={"mode": "percentile", "lower": 1.0, "upper": 99.0}
    )
    seg = Segmenter(model, device=dev, info=info, batch_size=sizes.tile_batch)
    n = sizes.scene
    grid = TileGrid.create(n, n, sizes.tile, sizes.overlap, align=seg.multiple)
    shapes: dict[tuple[int, int, int], torch.Tensor] = {}
    for i in range(grid.shape[0]):
        for chunk in tile_batches(grid.row(i), sizes.tile_batch):
            key = (len(chunk), chunk[0].height, chunk[0].width)
            shapes.setdefault(key, prepared(seg, torch.rand(key[0], 3, *key[1:])))
    plan = [
        shapes[(len(c), c[0].height, c[0].width)]
        for i in range(grid.shape[0])
        for c in tile_batches(grid.row(i), sizes.tile_batch)
    ]

    raw = network(seg, *plan)
    try:
        from segnet_domains.geo.tiler import TileOptions, tile_scene

        scene = _write_scene(tmp / "scene.tif", n)
        runs = iter(range(1000))
        opts = TileOptions(tile_size=sizes.tile, overlap=sizes.overlap, batch_size=sizes.tile_batch)
        full = lambda: tile_scene(seg, scene, tmp / f"out{next(runs)}", opts)  # noqa: E731 - fresh folder each run
        what = "tile_scene (GeoTIFF)"
    except ImportError as exc:  # rasterio missing on this machine: the in-memory tiler, said so
        image = np.random.default_rng(0).gamma(2.0, 600.0, (3, n, n)).astype(np.uint16)
        full = lambda: seg.predict_proba_tiled(image, sizes.tile, sizes.overlap, sizes.tile_batch)  # noqa: E731
        what = f"predict_proba_tiled (in memory; {exc.name} missing)"
    t = alternate({"raw": raw, "full": full}, dev, max(2, sizes.repeats // 2))
    r, f = median(t["raw"]), median(t["full"])
    work = sum(tl.height * tl.width for tl in grid) / 1e6
    report.add(
        "tile",
        f"{what} {n}²: {work / f:.3g} vs {work / r:.3g} MP/s, {r / f:.2f} of raw (target ≥ 0.85)",
        how=what,
        seconds=round(f, 3),
        raw_seconds=round(r, 3),
        mp_per_s=round(work / f, 2),
        raw_mp_per_s=round(work / r, 2),
        fraction_of_raw=round(r / f, 3),
    )


def train(dev: torch.device, sizes: Sizes, report: Report) -> None:
    import torch.nn.functional as F

    from segnet_domains.training.engine import _forward, build_optimizer, training_dtype
    from segnet_domains.training.loss import SegmentationLoss

    dtype = training_dtype(dev, "auto")
    opt_cfg = {"optimizer": "sgd", "lr": 0.001, "momentum": 0.9, "weight_decay": 0.0005}
    torch.manual_seed(0)
    net = SegNet(1, 2, features=list(sizes.features)).to(dev).train()
    opt = build_optimizer(net.parameters(), opt_cfg)
    loss_fn = SegmentationLoss(2)
    x = torch.rand(sizes.train_batch, 1, *sizes.train_hw, device=dev)
    y = (torch.rand(sizes.train_batch, 1, *sizes.train_hw, device=dev) > 0.97).long()

    def engine_step() -> None:
        loss = loss_fn(_forward(net, x, dtype), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def plain_step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y[:, 0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = alternate({"plain": plain_step, "engine": engine_step}, dev, sizes.repeats, sizes.warmup)
    p, e = median(t["plain"]), median(t["engine"])
    b = sizes.train_batch
    report.add(
        "train",
        f"{dtype}: {b / e:.1f} slices/s vs {b / p:.1f} plain step: ratio {e / p:.2f}",
        precision=str(dtype).removeprefix("torch."),
        slices_per_s=round(b / e, 2),
        plain_slices_per_s=round(b / p, 2),
        ratio=round(e / p, 3),
    )


def compiled(seg: Segmenter, sizes: Sizes, peak: float | None, report: Report) -> None:
    eager = seg.backend.model
    seg.backend.model = torch.compile(eager)
    try:
        networks(seg, sizes, peak, report, tag="compile")
    finally:
        seg.backend.model = eager


def normalize(dev: torch.device, sizes: Sizes, report: Report) -> None:
    from bench_normalize import case

    rng = np.random.default_rng(0)
    volume = rng.normal(300, 120, (1, *sizes.volume)).clip(0, 4000).astype(np.int16)
    case("normalize_volume", volume, dev, max(2, sizes.repeats // 2), report)
    scene = rng.gamma(2.0, 600.0, (3, sizes.scene, sizes.scene)).astype(np.uint16)
    case("normalize_scene", scene, dev, max(2, sizes.repeats // 2), report)


def section(report: Report, name: str, fn: Callable[[], Any]) -> Any:
    """Run one section; a failure is reported (one line + the traceback's tail) and the run goes on."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a benchmark reports what failed and measures the rest
        tail = traceback.format_exc().strip().splitlines()[-3:]
        report.add(
            name, f"FAILED {type(exc).__name__}: {exc}", error=f"{type(exc).__name__}: {exc}", where=tail
        )
        return None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(ap, device="auto")
    ap.add_argument("--quick", action="store_true", help="small sizes (a CPU check in seconds)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="also time torch.compile (default: on for CUDA, off for --quick)")  # fmt: skip
    ap.add_argument(
        "--only",
        help="comma-separated sections: peak,network,predict_proba,predict_volume,tile,train,normalize",
    )
    args = ap.parse_args(argv)
    dev = pick_device(args.device)
    sizes = QUICK if args.quick else Sizes()
    do_compile = args.compile if args.compile is not None else (dev.type == "cuda" and not args.quick)
    only = set(args.only.split(",")) if args.only else None
    report = Report(args.json, **machine(dev), quick=args.quick)
    want = lambda name: only is None or name in only  # noqa: E731
    seg = frame_segmenter(dev, sizes)
    report.add(
        "segmenter", f"SegNet(3,12) features {list(sizes.features)}, {seg.dtype}", precision=str(seg.dtype)
    )
    peak_dtype = torch.bfloat16 if dev.type == "cuda" else seg.dtype
    peak = None
    if want("peak"):
        peak = section(
            report,
            "peak",
            lambda: matmul_peak(dev, peak_dtype, sizes.matmul, sizes.repeats, report, sizes.warmup),
        )
    if want("network"):
        section(report, "network", lambda: networks(seg, sizes, peak, report))
    if want("predict_proba"):
        section(report, "predict_proba", lambda: predict_proba(seg, sizes, report))
    if want("predict_volume"):
        section(report, "predict_volume", lambda: predict_volume(dev, sizes, report))
    with tempfile.TemporaryDirectory() as tmp:
        if want("tile"):
            section(report, "tile", lambda: tile(dev, sizes, Path(tmp), report))
    if want("train"):
        section(report, "train", lambda: train(dev, sizes, report))
    if want("normalize"):
        section(report, "normalize", lambda: normalize(dev, sizes, report))
    if do_compile and want("network"):
        section(report, "compile", lambda: compiled(seg, sizes, peak, report))
    print("done", flush=True)
    return report.data


if __name__ == "__main__":
    main()
