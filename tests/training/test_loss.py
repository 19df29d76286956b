"""Loss: equals MONAI's DiceCELoss without mask/weights, ignores masked pixels, median-frequency weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss

from segnet_domains.training.loss import SegmentationLoss, median_frequency_weights


def _batch(seed: int = 0, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, k, 8, 9, generator=g), torch.randint(0, k, (2, 1, 8, 9), generator=g)


def test_matches_monai_dicece_without_mask() -> None:
    logits, label = _batch()
    ours = SegmentationLoss(3)(logits, label)
    monai = DiceCELoss(to_onehot_y=True, softmax=True)(logits, label)
    assert float(ours) == pytest.approx(float(monai), rel=1e-5)


def test_class_weights_match_torch_weighted_ce() -> None:
    logits, label = _batch(1)
    w = np.array([0.5, 2.0, 1.0], np.float32)
    loss = SegmentationLoss(3, weight=w, lambda_dice=0.0)(logits, label)
    ref = torch.nn.functional.cross_entropy(logits, label[:, 0], weight=torch.from_numpy(w))
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)


def test_masked_and_ignored_pixels_do_not_matter() -> None:
    logits, label = _batch(2)
    mask = torch.ones_like(label)
    mask[:, :, :3] = 0
    fn = SegmentationLoss(3)
    base = fn(logits, label, mask)
    changed = logits.clone()
    changed[:, :, :3] = torch.randn_like(changed[:, :, :3]) * 5
    assert float(fn(changed, label, mask)) == pytest.approx(float(base), rel=1e-5)
    # an ignore_index label behaves like a mask
    ignored = label.clone()
    ignored[:, :, :3] = 255
    assert float(SegmentationLoss(3, ignore_index=255)(changed, ignored)) == pytest.approx(
        float(base), rel=1e-5
    )
    # and the loss is differentiable
    logits.requires_grad_(True)
    fn(logits, label, mask).backward()
    assert logits.grad is not None and float(logits.grad[:, :, :3].abs().sum()) == 0.0


def test_median_frequency_weights_by_hand() -> None:
    # image A: 90 bg, 10 fg; image B: 100 bg; class 2 never seen
    a = np.zeros(100, int)
    a[:10] = 1
    b = np.zeros(100, int)
    w = median_frequency_weights([(a, None), (b, None)], 3)
    f_bg, f_fg = 190 / 200, 10 / 100  # fg frequency counts only images where fg is present
    med = np.median([f_bg, f_fg])
    assert w[0] == pytest.approx(med / f_bg) and w[1] == pytest.approx(med / f_fg)
    assert w[2] == pytest.approx(w.max())  # unseen class: the largest weight, not switched off
    # a mask excludes pixels from the statistics
    m = np.ones(100, bool)
    m[50:] = False
    w2 = median_frequency_weights([(a, m)], 2)
    assert w2[1] / w2[0] == pytest.approx((40 / 50) / (10 / 50))
