"""SegNet, SegNet-Basic and Bayesian SegNet: encoder → decoder → pixel-wise classifier.

References:
    Badrinarayanan, Kendall, Cipolla. "SegNet: A Deep Convolutional
    Encoder-Decoder Architecture for Image Segmentation", TPAMI 2017.
    https://arxiv.org/abs/1511.00561

    Kendall, Badrinarayanan, Cipolla. "Bayesian SegNet: Model Uncertainty in
    Deep Convolutional Encoder-Decoder Architectures for Scene Understanding",
    BMVC 2017. https://arxiv.org/abs/1511.02680
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from segnet_domains.model.blocks import ConvBNAct
from segnet_domains.model.decoder import SegNetDecoder
from segnet_domains.model.encoder import SegNetEncoder
from segnet_domains.model.init import he_init


class _EncoderDecoder(nn.Module):
    """Shared body: ``logits = decoder(*encoder(x))`` with optional central dropout."""

    encoder: SegNetEncoder
    decoder: SegNetDecoder
    #: What the last layer predicts: ``"segmentation"`` (class scores) or ``"density"`` (see :class:`SegNet`).
    head: str = "segmentation"

    def __init__(self, config: dict[str, Any], dropout: float) -> None:
        super().__init__()
        self._config = config
        self.dropout: nn.Module | None = nn.Dropout(dropout) if dropout > 0 else None

    @property
    def config(self) -> dict[str, Any]:
        """Architecture name and constructor arguments (what a checkpoint stores)."""
        return {"architecture": type(self).__name__, "args": dict(self._config)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``(N, out_channels, H, W)`` for input ``(N, in_channels, H, W)``."""
        x, skips = self.encoder(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.decoder(x, skips, self.dropout)

    def fuse_bn(self) -> nn.Module:
        """Fold every BatchNorm into its conv for inference; returns ``self`` in eval mode."""
        self.eval()
        for m in self.modules():
            if isinstance(m, ConvBNAct):
                m.fuse()
        return self

    def fuse_relu(self) -> None:
        """After :meth:`fuse_bn`, in the weights' final dtype: each ReLU runs inside its convolution.

        For eager inference on the CPU (:meth:`ConvBNAct.fuse_relu`); elsewhere
        the modules run as they are.
        """
        for m in self.modules():
            if isinstance(m, ConvBNAct):
                m.fuse_relu()

    def enable_mc_dropout(self, enabled: bool = True) -> None:
        """Keep dropout sampling at inference (Monte Carlo dropout) while BN stays in eval."""
        if self.dropout is not None:
            self.dropout.train(enabled)


#: The heads a SegNet can end with (see :class:`SegNet`).
HEADS = ("segmentation", "density")


class SegNet(_EncoderDecoder):
    """SegNet with a VGG16 encoder (13 convs) and a mirrored index-unpooling decoder.

    ``SegNet(3, 12)`` has 26 conv layers and 29.4 M parameters. Any input size
    works, odd sizes included; any number of input bands.

    Heads (the contract every consumer relies on):

    * ``head="segmentation"`` (default): the decoder's last 3×3 conv gives
      ``out_channels`` class scores per pixel; consumers take a softmax.
    * ``head="density"``: the same encoder and decoder end in a one-channel
      linear 3×3 conv (``out_channels`` must be 1) whose output is a crowd
      density map: persons per pixel times the checkpoint's ``density_scale``
      (the training targets' scale), no activation, trained with an MSE loss.
      The count of an image is the map's sum divided by ``density_scale``
      (:meth:`segnet_domains.inference.Segmenter.count`); no softmax is taken.

    Args:
        in_channels: input bands.
        out_channels: classes.
        features: channels of the five stages (paper: 64, 128, 256, 512, 512).
            Reduced widths such as ``(8, 16, 32, 64, 64)`` train fast on a CPU.
        dropout: Bayesian SegNet dropout probability applied after the deepest
            encoder and decoder stages (paper: 0.5; 0 disables it).
        depths: convs per stage (VGG16: 2, 2, 3, 3, 3).
        head: ``"segmentation"`` or ``"density"`` (above).

    Raises:
        ValueError: an unknown head, or a density head with ``out_channels != 1``.

    Example:
        >>> model = SegNet(in_channels=1, out_channels=2)
        >>> model(torch.zeros(1, 1, 97, 131)).shape
        torch.Size([1, 2, 97, 131])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (64, 128, 256, 512, 512),
        dropout: float = 0.0,
        depths: Sequence[int] = (2, 2, 3, 3, 3),
        head: str = "segmentation",
    ) -> None:
        features, depths = tuple(int(f) for f in features), tuple(int(d) for d in depths)
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {head!r}")
        if head == "density" and int(out_channels) != 1:
            raise ValueError(f"a density head has out_channels=1, not {out_channels}")
        config: dict[str, Any] = {
            "in_channels": int(in_channels),
            "out_channels": int(out_channels),
            "features": list(features),
            "dropout": float(dropout),
            "depths": list(depths),
        }
        if head != "segmentation":  # segmentation checkpoints keep their header as before
            config["head"] = head
        super().__init__(config, dropout)
        self.head = head
        self.in_channels, self.out_channels = in_channels, out_channels
        self.encoder = SegNetEncoder(in_channels, features, depths, kernel_size=3)
        self.decoder = SegNetDecoder(out_channels, features, depths, kernel_size=3)
        he_init(self)


class SegNetBasic(_EncoderDecoder):
    """SegNet-Basic, the paper's small analysis network (Sec. 4.1).

    Four encoder stages of one 7×7 conv with 64 channels (BN + ReLU) and index
    pooling; four decoder stages of unpooling + one 7×7 conv with BN and no
    ReLU; a 1×1 classifier.

    Args:
        in_channels: input bands.
        out_channels: classes.
        features: width of every stage (paper: 64).
        depth: number of stages (paper: 4).
        dropout: central dropout probability as in :class:`SegNet`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        features: int = 64,
        depth: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            {
                "in_channels": int(in_channels),
                "out_channels": int(out_channels),
                "features": int(features),
                "depth": int(depth),
                "dropout": float(dropout),
            },
            dropout,
        )
        self.in_channels, self.out_channels = in_channels, out_channels
        widths, depths = (features,) * depth, (1,) * depth
        self.encoder = SegNetEncoder(in_channels, widths, depths, kernel_size=7)
        self.decoder = SegNetDecoder(out_channels, widths, depths, 7, act=False, head_kernel=1)
        he_init(self)


ARCHITECTURES: dict[str, type[_EncoderDecoder]] = {"SegNet": SegNet, "SegNetBasic": SegNetBasic}


def build_model(architecture: str, args: dict[str, Any]) -> _EncoderDecoder:
    """Instantiate a registered architecture from its name and arguments.

    Raises:
        ValueError: the name is not a known architecture.
    """
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture {architecture!r} (known: {', '.join(ARCHITECTURES)})"
        ) from None
    return cls(**args)
