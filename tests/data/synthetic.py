"""Synthetic 2D scenes with known masks, and a tiny SegNet trained on them in seconds.

Used where a test needs a *trained* model (agreement of the fast path with
fp32, tiled vs whole-image equivalence): a random network's logits are nearly
tied everywhere, so agreement on it proves nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from segnet_domains import SegNet, save_checkpoint
from segnet_domains.adapters import Normalizer

TINY = (8, 16, 32, 32, 32)


def blob_scene(
    rng: np.random.Generator, h: int = 64, w: int = 64, channels: int = 1, n_blobs: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy ``C×H×W`` float image with bright disks, and the disks' ``H×W`` mask (0/1)."""
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), np.uint8)
    for _ in range(n_blobs):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(4, max(5.0, min(h, w) / 5))
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 1
    img = rng.normal(100, 10, (channels, h, w)) + 60.0 * mask[None]
    return img.astype(np.float32), mask


def train_tiny(
    path: Path, channels: int = 1, steps: int = 160, seed: int = 0, size: int = 64, dropout: float = 0.0
) -> Path:
    """Train a tiny SegNet to find the disks (~10–20 s on 2 cores) and save a checkpoint."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SegNet(channels, 2, features=TINY, dropout=dropout)
    norm_spec = {"mode": "percentile", "lower": 0.5, "upper": 99.5}
    normalize = Normalizer(norm_spec)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        pairs = [blob_scene(rng, size, size, channels) for _ in range(8)]
        x = torch.from_numpy(np.stack([normalize(p[0]) for p in pairs]))
        y = torch.from_numpy(np.stack([p[1] for p in pairs])).long()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save_checkpoint(
        path,
        model,
        class_names=["background", "blob"],
        normalization=norm_spec,
        domain="mri",
        provenance={"trained_on": "tests.data.synthetic.blob_scene", "steps": steps},
    )
