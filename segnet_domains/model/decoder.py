"""SegNet decoder: the encoder mirrored, upsampling only with pooling indices.

Contract
--------
``SegNetDecoder(out_channels, features, depths)`` takes the encoder's
``(bottleneck, skips)``. Decoder stage ``i`` (deepest first) unpools with
``skips[i]`` and applies ``depths[i]`` convs: all keep ``features[i]``
channels except the last, which maps to ``features[i-1]``. The very last conv
of stage 0 outputs the class scores and has no BN/ReLU (it is the pixel-wise
classifier). SegNet-Basic instead keeps all of stage 0's convs and adds a
separate 1×1 classifier (``head_kernel=1``). No transposed convolutions, no learned upsampling, no feature
concatenation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from segnet_domains.model.blocks import ConvBNAct
from segnet_domains.model.encoder import Skip
from segnet_domains.model.unpool import IndexUnpool


class SegNetDecoder(nn.Module):
    """Mirror of :class:`~segnet_domains.model.encoder.SegNetEncoder`.

    Args:
        out_channels: number of classes.
        features: the encoder's channels per stage.
        depths: the encoder's convs per stage.
        kernel_size: conv kernel.
        act: whether decoder convs have a ReLU (SegNet: yes; SegNet-Basic: no).
        head_kernel: ``None`` makes the last conv of stage 0 the classifier
            (SegNet); an int adds a separate classifier of that kernel size
            after a full stage 0 (SegNet-Basic: 1).
    """

    def __init__(
        self,
        out_channels: int,
        features: Sequence[int] = (64, 128, 256, 512, 512),
        depths: Sequence[int] = (2, 2, 3, 3, 3),
        kernel_size: int = 3,
        act: bool = True,
        head_kernel: int | None = None,
    ) -> None:
        super().__init__()
        stages = []
        for i in range(len(features)):
            width = features[i]
            target = features[i - 1] if i > 0 else width
            convs: list[nn.Module] = [ConvBNAct(width, width, kernel_size, act) for _ in range(depths[i] - 1)]
            if i > 0 or head_kernel is not None:
                convs.append(ConvBNAct(width, target, kernel_size, act))
            stages.append(nn.Sequential(*convs))
        # stages[i] decodes encoder stage i; they run deepest first.
        self.stages = nn.ModuleList(stages)
        self.unpool = IndexUnpool()
        k = kernel_size if head_kernel is None else head_kernel
        self.classifier = nn.Conv2d(features[0], out_channels, k, padding=k // 2)

    def forward(self, x: torch.Tensor, skips: list[Skip], dropout: nn.Module | None = None) -> torch.Tensor:
        for i in reversed(range(len(self.stages))):
            indices, size = skips[i]
            x = self.unpool(x, indices, size)
            x = self.stages[i](x)
            if dropout is not None and i == len(self.stages) - 1:
                x = dropout(x)
        return self.classifier(x)
