"""Real files for the napari tests (NIfTI, GeoTIFF via :mod:`segnet_domains.synthetic`), a trained model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from affine import Affine

from segnet_domains.synthetic import layouts

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


def train_lesion_model(path: Path, seed: int = 0) -> Path:
    """Train a tiny SegNet (with dropout) on axial slices of MRI-sample volumes, to a verified margin.

    Uses the checkpoint's own normaliser on each whole volume (as inference
    does) and MONAI's Dice + cross-entropy loss, on volumes of the tests' size
    and of the sample's default size, and trains until the lesion Dice on an
    unseen volume of the tests' size is at least 0.7 (see
    :func:`tests.data.synthetic.train_to_margin`), so the tests never see a
    marginal model, whatever the machine.
    """
    from monai.losses import DiceCELoss

    from segnet_domains import SegNet, save_checkpoint
    from segnet_domains.adapters import Normalizer
    from segnet_domains.synthetic.brain import flair_head
    from tests.data.synthetic import train_to_margin

    torch.manual_seed(seed)
    spec = {"mode": "percentile", "lower": 0.5, "upper": 99.5}
    normalize = Normalizer(spec)

    def axial(shape: tuple[int, int, int] | None, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        vol, mask = flair_head(shape, lesions=6, seed=s) if shape else flair_head(lesions=6, seed=s)
        norm = normalize(vol[None])[0]
        keep = [k for k in range(vol.shape[2]) if mask[:, :, k].any() or k % 4 == 0]
        x = torch.from_numpy(np.moveaxis(norm[:, :, keep], 2, 0)[:, None].copy())
        return x, torch.from_numpy(np.moveaxis(mask[:, :, keep], 2, 0)[:, None].astype(np.int64).copy())

    sets = [axial((40, 48, 36), s) for s in range(4)] + [axial(None, s) for s in range(2)]
    check_x, check_y = axial((40, 48, 36), 100)
    gen = torch.Generator().manual_seed(seed)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x_all, y_all = sets[step % len(sets)]
        idx = torch.randint(0, len(x_all), (16,), generator=gen)
        return x_all[idx], y_all[idx]

    def lesion_dice(model: torch.nn.Module) -> float:
        pred = model(check_x).argmax(1, keepdim=True)
        return float(2 * ((pred == 1) & (check_y == 1)).sum() / ((pred == 1).sum() + (check_y == 1).sum()))

    model = SegNet(1, 2, features=FEATURES, dropout=0.1)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    with one_thread():
        score = train_to_margin(model, batch, lesion_dice, loss_fn=loss_fn, steps=100, lr=1e-2, margin=0.7)
    return save_checkpoint(
        path,
        model,
        class_names=["background", "lesion"],
        class_colors=[[0, 0, 0], [255, 40, 40]],
        normalization=spec,
        domain="mri",
        slice_axis=2,
        provenance={"trained_on": "segnet_domains.synthetic.brain.flair_head", "check_dice": score},
    )


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
