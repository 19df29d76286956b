"""``segnet-domains demo``: the three jobs end to end on generated data, with pictures.

1. Writes small datasets in the real layouts (:mod:`segnet_domains.synthetic`):
   ATLAS-style MNI-space NIfTI, RITE-style fundus TIFF/PNG/GIF, 4-band UTM
   GeoTIFFs with label rasters.
2. Trains a reduced SegNet on each through the shared MONAI training engine
   (the same code as ``segnet-domains train``), a fixed number of steps each.
3. Segments held-out data with the front-end code paths: ``predict-volume``'s
   NIfTI job, ``predict-image``'s PNG job and the ``tile`` batch job (COG out).
4. Scores them (Dice / Jaccard, mIoU), writes ``OUT/summary.json`` and a PNG
   overlay per domain.

``quick=True`` shrinks everything (used by the test suite).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from segnet_domains.errors import InputError
from segnet_domains.geo.batch import run_batch
from segnet_domains.geo.tiler import TileOptions
from segnet_domains.inference import Segmenter, SegmenterSpec
from segnet_domains.io.atomic import atomic_output
from segnet_domains.io.images import overlay, write_labels, write_png
from segnet_domains.io.safety import FolderOutput, holds_only
from segnet_domains.medical.nifti import read_volume
from segnet_domains.medical.rite import find_samples, load_pair
from segnet_domains.metrics import evaluate_case, summarize
from segnet_domains.predict_files import predict_volume_file
from segnet_domains.synthetic import aerial as aerial_data
from segnet_domains.synthetic.layouts import atlas_t1w, landsat_pairs, rite_fundus
from segnet_domains.training import build_config, train

log = logging.getLogger(__name__)

REDUCED_FEATURES = "[16,32,64,64,64]"


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: full (``make demo``) or quick (tests)."""

    mri_voxel_mm: float
    mri_subjects: int
    mri_epochs: int
    mri_steps: int
    fundus_train: int
    fundus_epochs: int
    fundus_steps: int
    aerial_size: tuple[int, int]
    aerial_scenes: int
    aerial_epochs: int
    aerial_steps: int
    aerial_tile: int
    features: str = REDUCED_FEATURES
    aerial_patch: int = 256
    mri_val_every: int = 20


#: ``make demo``: about 8 min on 2 cores without bf16 (see README). 30 MRI epochs: validation Dice levels off
#: by epoch 20, and validating every 5 picks the best of six (every 20 kept a weaker epoch-20 model); 128²
#: aerial patches: four times cheaper than 256² and more varied, higher mIoU.
FULL = DemoSize(2.0, 12, 30, 40, 6, 40, 25, (768, 768), 5, 40, 40, 512, aerial_patch=128, mri_val_every=5)
QUICK = DemoSize(4.0, 3, 1, 3, 2, 1, 3, (160, 160), 2, 1, 3, 128, features="[4,8,8,8,8]")


def _train(
    task: str,
    data_root: Path,
    out: Path,
    size: DemoSize,
    epochs: int,
    steps: int,
    extra: list[str],
    device: str,
) -> Path:
    overrides = [
        f"task={task}",
        f"model.features={size.features}",
        f"train.epochs={epochs}",
        f"train.max_steps_per_epoch={steps}",
        "train.optimizer=adam",
        "train.lr=0.003",
        "train.num_workers=0",
        "train.precision=auto",  # bf16 autocast where the CPU has it
        "train.bn_stats_batches=8",
        f"train.device={device}",
        *extra,
    ]
    result = train(build_config(None, overrides, data_root=data_root, out=out))
    return result.best


def run_mri(root: Path, out: Path, size: DemoSize, device: str) -> dict[str, Any]:
    """Train on ATLAS-style subjects, segment a held-out subject (NIfTI out), score it."""
    data = root / "atlas"
    atlas_t1w(data, subjects=size.mri_subjects, seed=1, voxel_mm=size.mri_voxel_mm)
    held = atlas_t1w(root / "atlas_heldout", subjects=1, seed=99, voxel_mm=size.mri_voxel_mm)
    test_img, test_mask = held[0]
    ckpt = _train(
        "atlas_lesion",
        data,
        out / "models" / "mri",
        size,
        size.mri_epochs,
        size.mri_steps,
        [
            "data.samples_per_volume=8",
            "data.pos_fraction=0.6",
            "train.batch_size=1",
            f"train.val_every={size.mri_val_every}",
        ],
        device,
    )
    seg = Segmenter.from_checkpoint(ckpt, device=device)
    pred_path = out / "mri" / f"{test_img.name.replace('_T1w.nii.gz', '')}_lesion_pred.nii.gz"
    pred_path.parent.mkdir(parents=True, exist_ok=True)
    pred = predict_volume_file(seg, test_img, pred_path, progress=True)
    truth = np.asarray(read_volume(test_mask).data, np.uint8)
    report = summarize([evaluate_case(pred, truth, 2, name=test_img.name)], seg.info.class_names)
    vol = read_volume(test_img).data
    z = int(np.argmax(truth.sum((0, 1))))  # the axial slice with most lesion
    # anterior up, enlarged 3× (nearest) so a 2 mm slice is visible
    view = [np.rot90(a[:, :, z]).repeat(3, 0).repeat(3, 1) for a in (vol, truth, pred)]
    side_by_side(out / "mri" / "overlay.png", *view)
    return _scores(report, pred_path, out / "mri" / "overlay.png", ckpt)


def run_fundus(root: Path, out: Path, size: DemoSize, device: str) -> dict[str, Any]:
    """Train on RITE-style images (vessel task), segment a held-out image (PNG out), score inside the FOV."""
    data = root / "rite"
    rite_fundus(data, train=size.fundus_train, test=1, seed=2)
    rite_fundus(root / "rite_heldout", train=0, test=1, seed=77)
    held = find_samples(root / "rite_heldout", "test")[0]
    ckpt = _train(
        "rite_vessels",
        data,
        out / "models" / "fundus",
        size,
        size.fundus_epochs,
        size.fundus_steps,
        ["data.patch_size=128", "data.samples_per_image=8", "train.batch_size=1", "train.val_every=10"],
        device,
    )
    seg = Segmenter.from_checkpoint(ckpt, device=device)
    (out / "fundus").mkdir(parents=True, exist_ok=True)
    pair = load_pair(held, vessels=True)
    image, truth, fov = pair.image, pair.labels, pair.fov
    pred = (seg.predict(image, source=str(held.image)) * fov).astype(
        np.uint8
    )  # outside the FOV is not retina
    pred_path = write_labels(out / "fundus" / f"{held.name}_vessels.png", pred)
    report = summarize([evaluate_case(pred, truth, 2, mask=fov, name=held.image.name)], seg.info.class_names)
    side_by_side(out / "fundus" / "overlay.png", image, truth, pred)
    return _scores(report, pred_path, out / "fundus" / "overlay.png", ckpt)


def run_aerial(root: Path, out: Path, size: DemoSize, device: str) -> dict[str, Any]:
    """Train on GeoTIFF scenes, batch-tile a held-out scene to a COG, score mIoU."""
    data = root / "aerial"
    landsat_pairs(data, scenes=size.aerial_scenes, size=size.aerial_size, seed=3)
    held_img, held_lab = landsat_pairs(root / "aerial_heldout", scenes=1, size=size.aerial_size, seed=55)[0]
    ckpt = _train(
        "aerial",
        data,
        out / "models" / "aerial",
        size,
        size.aerial_epochs,
        size.aerial_steps,
        [
            f"data.class_names={json.dumps(aerial_data.CLASS_NAMES)}",
            f"data.class_colors={json.dumps(aerial_data.CLASS_COLORS)}",
            f"data.patch_size={min(size.aerial_patch, *size.aerial_size)}",
            "data.samples_per_scene=16",
            "train.batch_size=1",
            "train.val_every=20",
        ],
        device,
    )
    # force: a rerun of the demo regenerates its own folder (a newly trained model replaces the maps)
    options = TileOptions(tile_size=size.aerial_tile, overlap=size.aerial_tile // 4, force=True)
    run = run_batch(SegmenterSpec(str(ckpt), device=device), [held_img], out / "aerial", options)
    if run.failed:
        raise InputError(held_img, f"tiling failed: {run.failed[0].error}")
    pred_path = out / "aerial" / f"{held_img.stem}_labels.tif"
    with rasterio.open(pred_path) as src:
        pred = src.read(1)
    with rasterio.open(held_lab) as src:
        truth = src.read(1)
    with rasterio.open(held_img) as src:
        bands = src.read()
    names = aerial_data.CLASS_NAMES
    case = evaluate_case(pred, truth, len(names), name=held_img.name, ignore_index=aerial_data.IGNORE)
    report = summarize([case], names, include_background=True)
    valid = truth != aerial_data.IGNORE
    show = [np.where(valid, a, 0) for a in (truth, pred)]
    side_by_side(out / "aerial" / "overlay.png", bands[[2, 1, 0]], *show, colors=aerial_data.CLASS_COLORS)
    res = _scores(report, pred_path, out / "aerial" / "overlay.png", ckpt)
    res["tile_summary"] = str(run.path)
    return res


TRUTH_COLORS = [[0, 0, 0], [40, 220, 40]]
PRED_COLORS = [[0, 0, 0], [255, 230, 0]]


def side_by_side(
    path: Path, image: np.ndarray, truth: np.ndarray, pred: np.ndarray, colors: list[list[int]] | None = None
) -> Path:
    """Write ``image | truth overlay | prediction overlay`` as one PNG (truth green, prediction yellow)."""
    truth_colors = colors or TRUTH_COLORS
    pred_colors = colors or PRED_COLORS
    panels = [
        overlay(image, np.zeros_like(pred), pred_colors),
        overlay(image, truth, truth_colors, alpha=0.6),
        overlay(image, pred, pred_colors, alpha=0.6),
    ]
    return write_png(path, np.concatenate(panels, axis=1))


def _scores(report: dict[str, Any], output: Path, picture: Path, ckpt: Path) -> dict[str, Any]:
    mean = report["mean"]
    return {
        "dice": mean.get("dice"),
        "jaccard": mean.get("jaccard"),
        "precision": mean.get("precision"),
        "recall": mean.get("recall"),
        "miou": report.get("miou"),
        "output": str(output),
        "overlay": str(picture),
        "checkpoint": str(ckpt),
    }


#: What the demo writes into its folder: a rerun reuses a folder holding only these.
DEMO_ENTRIES = ("data", "models", "mri", "fundus", "aerial", "summary.json")


def demo_output(out: str | Path) -> FolderOutput:
    """The demo folder as an output: new, empty, or an earlier demo's (regenerated in place)."""
    return FolderOutput(out, "demo folder", "--out", ours=holds_only(DEMO_ENTRIES), exists="ours")


DOMAINS: dict[str, Callable[[Path, Path, DemoSize, str], dict[str, Any]]] = {
    "mri": run_mri,
    "fundus": run_fundus,
    "aerial": run_aerial,
}


def run_demo(
    out: str | Path = "demo_out", quick: bool = False, device: str = "auto", domains: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run the demo; returns (and writes to ``OUT/summary.json``) the scores per domain.

    Args:
        out: output folder (data, models, predictions, overlays, summary).
        quick: tiny sizes and one short epoch each (for tests; scores are not meaningful).
        device: where to train and infer.
        domains: a subset of ``mri``, ``fundus``, ``aerial`` (default: all).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = QUICK if quick else FULL
    summary: dict[str, Any] = {"quick": quick, "seconds": {}}
    start = time.perf_counter()
    for name in domains or tuple(DOMAINS):
        t = time.perf_counter()
        print(
            f"\n== {name}: generating data, training a reduced SegNet, segmenting held-out data", flush=True
        )
        summary[name] = DOMAINS[name](out / "data", out, size, device)
        summary["seconds"][name] = round(time.perf_counter() - t, 1)
        score = summary[name]["miou"] if name == "aerial" else summary[name]["dice"]
        label = "mIoU" if name == "aerial" else "Dice"
        print(
            f"== {name}: {label} {score:.3f} in {summary['seconds'][name]:.0f} s -> {summary[name]['output']}"
        )
    summary["seconds"]["total"] = round(time.perf_counter() - start, 1)
    with atomic_output(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary
