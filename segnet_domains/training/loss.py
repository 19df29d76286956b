"""Loss: MONAI's Dice + cross-entropy, with class weights and ignored pixels.

MONAI's Dice (:class:`monai.losses.MaskedDiceLoss`, softmax, one-hot target)
plus a cross-entropy averaged over the valid pixels; pixels outside a valid
mask (field of view, nodata) or labelled ``ignore_index`` count in neither.

Class weights: median-frequency balancing as in SegNet §3.4 (Eigen & Fergus):
``w_c = median(f) / f_c`` with ``f_c`` = pixels of class c / total pixels of
the images where c is present.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, MaskedDiceLoss
from torch import nn


def median_frequency_weights(
    labels: Iterable[tuple[np.ndarray, np.ndarray | None]], num_classes: int
) -> np.ndarray:
    """Median-frequency class weights from ``(label, mask)`` pairs.

    Pixels outside ``mask`` are not counted. A class never seen gets the
    largest weight of the seen classes, so it is not switched off.
    """
    class_pixels = np.zeros(num_classes, np.float64)
    image_pixels = np.zeros(num_classes, np.float64)
    for label, mask in labels:
        lab = np.asarray(label).ravel()
        if mask is not None:
            lab = lab[np.asarray(mask).ravel().astype(bool)]
        lab = lab[(lab >= 0) & (lab < num_classes)].astype(np.int64)
        counts = np.bincount(lab, minlength=num_classes)[:num_classes]
        class_pixels += counts
        image_pixels[counts > 0] += lab.size
    seen = class_pixels > 0
    if not seen.any():
        return np.ones(num_classes, np.float32)
    freq = np.where(seen, class_pixels / np.maximum(image_pixels, 1), np.nan)
    weights = np.nanmedian(freq) / freq
    weights[~seen] = np.nanmax(weights)
    return weights.astype(np.float32)


class SegmentationLoss(nn.Module):
    """``lambda_dice · Dice + lambda_ce · CE`` over ``B×K×H×W`` logits and ``B×1×H×W`` labels.

    The terms of MONAI's :class:`~monai.losses.DiceCELoss` (softmax Dice on the
    one-hot target + cross-entropy), built from :class:`~monai.losses.MaskedDiceLoss`
    so that pixels outside ``mask`` or labelled ``ignore_index`` count in
    neither term. Class weights (median-frequency balancing) apply to the
    cross-entropy, as in SegNet; the Dice term is already class-balanced.

    Args:
        num_classes: K.
        weight: optional per-class weights (K) of the cross-entropy.
        ignore_index: label value excluded from the loss.
        lambda_dice: weight of the Dice term.
        lambda_ce: weight of the cross-entropy term.
    """

    def __init__(
        self,
        num_classes: int,
        weight: torch.Tensor | np.ndarray | None = None,
        ignore_index: int | None = None,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.lambda_dice, self.lambda_ce = float(lambda_dice), float(lambda_ce)
        w = None if weight is None else torch.as_tensor(np.asarray(weight), dtype=torch.float32)
        self.register_buffer("weight", w)
        self.dice = DiceLoss(softmax=True)
        self.masked_dice = MaskedDiceLoss(softmax=True)

    def forward(
        self, logits: torch.Tensor, label: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss of a batch; ``mask`` (``B×1×H×W``, 1 = counts) is optional."""
        label = label.long()
        if self.ignore_index is not None:
            keep = label != self.ignore_index
            mask = keep if mask is None else (mask.bool() & keep)
            label = torch.where(keep, label, torch.zeros_like(label))
        logits = logits.float()
        onehot = F.one_hot(label[:, 0], self.num_classes).permute(0, 3, 1, 2).to(logits.dtype)
        m = None if mask is None else mask.to(logits.dtype)
        dice = self.dice(logits, onehot) if m is None else self.masked_dice(logits, onehot, mask=m)
        ce_map = F.cross_entropy(logits, label[:, 0], weight=self.weight, reduction="none")
        valid = torch.ones_like(ce_map) if m is None else m[:, 0]
        # weighted mean over the valid pixels, as F.cross_entropy's "mean" over all pixels
        w_pix = valid if self.weight is None else valid * self.weight[label[:, 0]]
        ce = (ce_map * valid).sum() / w_pix.sum().clamp_min(1e-6)
        return self.lambda_dice * dice + self.lambda_ce * ce
