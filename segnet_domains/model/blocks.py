"""The conv → BatchNorm → ReLU unit every SegNet stage is made of."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class ConvBNAct(nn.Module):
    """``conv(k×k, same padding) → BatchNorm → ReLU`` (ReLU optional, as in SegNet-Basic's decoder).

    :meth:`fuse` folds the BatchNorm into the convolution for inference
    (same outputs in eval mode, one pass over memory fewer).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=True)
        self.norm: nn.Module = nn.BatchNorm2d(out_channels)
        self.act: nn.Module = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))

    def fuse(self) -> None:
        """Fold BatchNorm into the conv (eval mode only); idempotent."""
        if isinstance(self.norm, nn.BatchNorm2d):
            self.conv = fuse_conv_bn_eval(self.conv.eval(), self.norm.eval())
            self.norm = nn.Identity()


def conv_stack(in_channels: int, out_channels: int, n_convs: int, kernel_size: int = 3) -> nn.Sequential:
    """``n_convs`` :class:`ConvBNAct` units, the first changing the channel count."""
    layers = [ConvBNAct(in_channels, out_channels, kernel_size)]
    layers += [ConvBNAct(out_channels, out_channels, kernel_size) for _ in range(n_convs - 1)]
    return nn.Sequential(*layers)
