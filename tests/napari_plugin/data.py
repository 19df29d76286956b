"""Real files for the napari tests (NIfTI, GeoTIFF via :mod:`segnet_domains.synthetic`), a trained model."""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from affine import Affine
from monai.losses import DiceCELoss

from segnet_domains.adapters import Normalizer, crop, pad_to_multiple
from segnet_domains.synthetic import layouts
from segnet_domains.synthetic.brain import flair_head
from segnet_domains.training import register_task
from tests.data.synthetic import FixtureTask, train_to_margin

#: Tiny SegNet widths used throughout these tests.
FEATURES = (4, 8, 16, 16, 16)


#: A stored orientation that is not RAS: axes permuted and flipped (P, L, S), anisotropic voxels.
NON_RAS_AFFINE = np.array(
    [
        [0.0, -0.9, 0.0, 30.5],
        [-1.1, 0.0, 0.0, 40.25],
        [0.0, 0.0, 1.3, -20.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def write_nifti(path: Path, ras_volume: np.ndarray, affine: np.ndarray = NON_RAS_AFFINE) -> Path:
    """Store a RAS-ordered array under ``affine`` (voxels reordered so anatomy is preserved).

    The qform (code 1) and sform (code 2) are both set and the description is
    filled, so a round trip that loses header fields shows.
    """
    return layouts.write_nifti(path, ras_volume, affine, codes=(1, 2), description="synthetic FLAIR")


def write_geotiff(path: Path, array: np.ndarray, crs: str = "EPSG:32633", res: float = 0.5) -> Path:
    """Write a ``C×H×W`` array as a plain GeoTIFF (no compression, no nodata) in a UTM CRS, north up."""
    transform = Affine(res, 0.0, 500123.25, 0.0, -res, 4650987.75)
    return layouts.write_geotiff(path, array, crs=crs, transform=transform, nodata=None, compress=None)


#: The lesion fixture's normalisation (recorded in its checkpoint; inference applies it).
NORMALIZATION = {"mode": "percentile", "lower": 0.5, "upper": 99.5}


def axial_slices(shape: tuple[int, int, int] | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised axial slices ``N×1×H×W`` of a FLAIR sample volume and their lesion labels.

    The whole volume is normalised with the checkpoint's own normaliser (as
    inference does); slices with lesion and every fourth slice are kept.
    """
    vol, mask = flair_head(shape, lesions=6, seed=seed) if shape else flair_head(lesions=6, seed=seed)
    norm = Normalizer(NORMALIZATION)(vol[None])[0]
    keep = [k for k in range(vol.shape[2]) if mask[:, :, k].any() or k % 4 == 0]
    x = torch.from_numpy(np.moveaxis(norm[:, :, keep], 2, 0)[:, None].copy())
    return x, torch.from_numpy(np.moveaxis(mask[:, :, keep], 2, 0)[:, None].astype(np.int64).copy())


@functools.cache
def _training_volumes() -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Four volumes of the tests' size and two of the sample's default size (made once per session)."""
    return tuple(
        [axial_slices((40, 48, 36), s) for s in range(4)] + [axial_slices(None, s) for s in range(2)]
    )


class DiceCE(torch.nn.Module):
    """MONAI's Dice + cross-entropy with the Dice pooled over the batch, as an engine loss."""

    def __init__(self) -> None:
        super().__init__()
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)

    def forward(
        self, logits: torch.Tensor, label: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.loss(logits, label)


class LesionSlicesTask(FixtureTask):
    """Axial slices of FLAIR sample volumes in memory, for the lesion fixture model.

    One item per step: ``data.batch`` slices drawn from one volume (the
    volumes take turns; sizes differ between volumes, so a batch never mixes
    them), from ``(data.seed, data.round)``.
    """

    name: ClassVar[str] = "fixture_lesion_slices"
    loss_class = DiceCE
    data_defaults: ClassVar[dict[str, Any]] = {"seed": 0, "round": 0, "batch": 16}

    def metadata(self) -> dict[str, Any]:
        return {
            "in_channels": 1,
            "out_channels": 2,
            "class_names": ["background", "lesion"],
            "class_colors": [[0, 0, 0], [255, 40, 40]],
            "normalization": NORMALIZATION,
            "domain": "mri",
            "slice_axis": 2,
        }

    def train_dataset(self) -> list[list[dict[str, torch.Tensor]]]:
        sets = _training_volumes()
        gen = torch.Generator().manual_seed(int(self.data["seed"]) * 1000 + int(self.data["round"]))
        items = []
        for step in range(int(self.config["train"]["max_steps_per_epoch"])):
            x_all, y_all = sets[step % len(sets)]
            idx = torch.randint(0, len(x_all), (int(self.data["batch"]),), generator=gen)
            items.append([{"image": x_all[i], "label": y_all[i]} for i in idx])
        return items


register_task(LesionSlicesTask.name, LesionSlicesTask)


def train_lesion_model(path: Path, seed: int = 0) -> Path:
    """Train a tiny SegNet (with dropout) on axial slices of MRI-sample volumes, to a verified margin.

    Trains through the engine (:class:`LesionSlicesTask`, MONAI's Dice +
    cross-entropy) on volumes of the tests' size and of the sample's default
    size, until the lesion Dice on an unseen volume of the tests' size is at
    least 0.7 (see :func:`tests.data.synthetic.train_to_margin`), so the tests
    never see a marginal model, whatever the machine.
    """
    check_x, check_y = axial_slices((40, 48, 36), 100)

    def lesion_dice(model: torch.nn.Module) -> float:
        # padded as the engine trains and the Segmenter infers (40×48 slices → 64×64, cropped back)
        padded, size = pad_to_multiple(check_x, 2 ** len(model.encoder.stages))
        pred = crop(model(padded), size).argmax(1, keepdim=True)
        return float(2 * ((pred == 1) & (check_y == 1)).sum() / ((pred == 1).sum() + (check_y == 1).sum()))

    settings = [
        f"model.features={list(FEATURES)}",
        "model.dropout=0.1",
        f"train.seed={seed}",
        "train.batch_size=1",
        "train.bn_stats_batches=8",
        f"data.seed={seed}",
    ]
    with one_thread():
        best, _ = train_to_margin(
            LesionSlicesTask.name,
            path.parent / f"{path.stem}_run",
            lesion_dice,
            settings,
            steps=100,
            margin=0.7,
        )
    return Path(shutil.copyfile(best, path))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a 2-core machine shared with other jobs, two OpenMP threads
    spin against each other and a tiny model runs ~100× slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def open_in_viewer(layer_data: tuple) -> tuple:
    """Add one reader ``(data, kwargs, "image")`` tuple to a Qt-free ``ViewerModel``; return both."""
    from napari.components import ViewerModel

    viewer = ViewerModel()
    data, kwargs, _ = layer_data
    return viewer, viewer.add_image(data, **kwargs)


def ensure_plugin_discovered() -> None:
    """Make npe2 know our manifest (napari's app does this at start; Qt-free tests must ask)."""
    import npe2

    pm = npe2.PluginManager.instance()
    try:
        pm.get_manifest("segnet-domains")
    except KeyError:
        pm.discover(include_npe1=False)
