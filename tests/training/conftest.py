"""Miniature ATLAS/RITE layouts and one short training run shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from segnet_domains.synthetic.layouts import atlas_phantoms, rite_miniature
from segnet_domains.training import TrainResult, build_config, train
from tests.shared import once_per_run

CONFIGS = Path(__file__).resolve().parents[2] / "pipelines" / "configs"

#: Reduced SegNet and a short schedule: a few seconds per epoch on 2 cores. Three stages, not five: the
#: miniature's 32×40 slices pool to 1×2 after five, and 32 Adam steps of that deeper net were a coin flip
#: (validation Dice 0.51 or 0.0 by seed here, 0.36 on an Intel AMX machine). This one learns to Dice
#: 0.86–0.96 over seeds 0–2 (2-core AMD EPYC, AVX2, fp32), far above the learning test's 0.4.
TINY_ATLAS = [
    "model.features=[16,32,64]",
    "model.depths=[2,2,2]",
    "train.optimizer=adam",
    "train.lr=0.01",
    "train.class_weights=none",
    "train.batch_size=1",
    "train.num_workers=0",
    "train.progress=false",
    "data.samples_per_volume=16",
]
TINY_RITE = [
    "model.features=[8,16,32,32,32]",
    "train.optimizer=adam",
    "train.lr=0.005",
    "train.batch_size=2",
    "train.num_workers=0",
    "train.progress=false",
    "data.patch_size=32",
    "data.samples_per_image=2",
    "train.bn_stats_batches=2",
]


@pytest.fixture(scope="session")
def atlas_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five labelled subjects and one without a mask (inference only), BIDS names, gzip NIfTI."""

    def build(root: Path) -> Path:
        atlas_phantoms(root)
        return root

    return once_per_run(tmp_path_factory, "atlas", build)


@pytest.fixture(scope="session")
def rite_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four training and two test RITE images (64×72)."""
    return rite_miniature(tmp_path_factory.mktemp("rite"))


@pytest.fixture(scope="session")
def atlas_run(atlas_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, TrainResult]:
    """A short ATLAS run (8 epochs × 4 volumes × 8 axial slices): learns the lesions."""

    def run(out: Path) -> tuple[dict, TrainResult]:
        overrides = [*TINY_ATLAS, "train.epochs=8", "train.val_every=4"]
        config = build_config(CONFIGS / "atlas_lesion.yaml", overrides, data_root=atlas_root, out=out)
        return config, train(config)

    return once_per_run(tmp_path_factory, "atlas_run", run)
