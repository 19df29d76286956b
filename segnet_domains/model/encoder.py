"""SegNet encoder: VGG16's 13 convolutions with index-keeping max pooling.

Contract
--------
``SegNetEncoder(in_channels, features=(64, 128, 256, 512, 512), depths=(2, 2, 3, 3, 3))``

* stage ``i`` = ``depths[i]`` × (3×3 conv → BN → ReLU) with ``features[i]`` channels,
  then 2×2 max pooling (stride 2, rounding up) that keeps its argmax indices;
* ``forward(x)`` returns ``(bottleneck, skips)`` where ``bottleneck`` is the
  last stage's pooled map and ``skips[i] = (indices_i, size_i)`` is what
  decoder stage ``i`` needs to unpool: the pooling indices and the exact
  pre-pooling ``(H, W)``. No feature maps are passed to the decoder, only
  indices (SegNet's memory saving over U-Net/FCN).

With the defaults the module names follow torchvision's ``vgg16_bn.features``
order one-to-one, so :func:`segnet_domains.model.init.load_vgg16_bn` can copy
ImageNet weights from a local file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from segnet_domains.model.blocks import conv_stack
from segnet_domains.model.unpool import IndexPool

Skip = tuple[torch.Tensor, torch.Size]


class SegNetEncoder(nn.Module):
    """VGG16-style encoder returning the bottleneck and per-stage pooling indices.

    Args:
        in_channels: input bands (1 for MRI, 3 for RGB, 4+ for multispectral).
        features: channels of each stage.
        depths: convolutions per stage.
        kernel_size: conv kernel (3 in SegNet, 7 in SegNet-Basic).
    """

    def __init__(
        self,
        in_channels: int,
        features: Sequence[int] = (64, 128, 256, 512, 512),
        depths: Sequence[int] = (2, 2, 3, 3, 3),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if len(features) != len(depths):
            raise ValueError(f"features {tuple(features)} and depths {tuple(depths)} differ in length")
        chans = [in_channels, *features]
        self.stages = nn.ModuleList(
            conv_stack(chans[i], chans[i + 1], depths[i], kernel_size) for i in range(len(features))
        )
        self.pool = IndexPool()
        self.features = tuple(features)
        self.depths = tuple(depths)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[Skip]]:
        skips: list[Skip] = []
        for stage in self.stages:
            x = stage(x)
            x, indices, size = self.pool(x)
            skips.append((indices, size))
        return x, skips
