"""Weight initialisation: He (Kaiming) init and VGG16-BN encoder weights from a local file.

The paper initialises the encoder from ImageNet VGG16 and the decoder with
He et al.'s scheme (https://arxiv.org/abs/1502.01852). Nothing is downloaded
here: pass the path of a torchvision ``vgg16_bn`` state dict you already have
(``torch.save(torchvision.models.vgg16_bn(weights=...).state_dict(), path)``
on a machine with torchvision, or the ``vgg16_bn-*.pth`` file from its cache).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from segnet_domains.model.encoder import SegNetEncoder

# torchvision's vgg16_bn.features: conv at i, bn at i+1, relu at i+2, pools between stages.
_VGG16_BN_CONV_INDICES = (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40)


def he_init(model: nn.Module) -> None:
    """Kaiming-normal conv weights (fan-out, ReLU), zero biases, unit BN."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def load_vgg16_bn(model: nn.Module, path: str | Path) -> list[str]:
    """Copy ImageNet VGG16-BN convolution and BN weights into ``model.encoder``.

    Reads a torchvision-layout state dict (keys ``features.{i}.weight`` …) with
    ``weights_only=True``, so no code in the file can run. If the model's
    ``in_channels`` is not 3, the first conv's RGB filters are averaged and
    repeated over the input bands (the usual trick for grey MRI or
    multispectral input).

    Args:
        model: a :class:`~segnet_domains.model.segnet.SegNet` (any module whose
            ``encoder`` is a :class:`SegNetEncoder`) with the default VGG16 widths and depths.
        path: the local weights file.

    Returns:
        The encoder parameter names that were loaded.

    Raises:
        ValueError: the model is not VGG16-shaped or the file lacks a key.
    """
    encoder: SegNetEncoder = model.encoder
    if tuple(encoder.features) != (64, 128, 256, 512, 512) or tuple(encoder.depths) != (2, 2, 3, 3, 3):
        raise ValueError("VGG16-BN weights need features=(64,128,256,512,512), depths=(2,2,3,3,3)")
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    units = [unit for stage in encoder.stages for unit in stage]
    loaded: list[str] = []
    with torch.no_grad():
        for unit, idx in zip(units, _VGG16_BN_CONV_INDICES, strict=True):
            pairs = {
                unit.conv.weight: f"features.{idx}.weight",
                unit.conv.bias: f"features.{idx}.bias",
                unit.norm.weight: f"features.{idx + 1}.weight",
                unit.norm.bias: f"features.{idx + 1}.bias",
                unit.norm.running_mean: f"features.{idx + 1}.running_mean",
                unit.norm.running_var: f"features.{idx + 1}.running_var",
            }
            for target, key in pairs.items():
                if key not in state:
                    raise ValueError(f"{path}: missing key {key!r}; not a torchvision vgg16_bn state dict")
                src = state[key]
                if key == "features.0.weight" and src.shape[1] != target.shape[1]:
                    src = src.mean(dim=1, keepdim=True).repeat(1, target.shape[1], 1, 1)
                    src = src * (3.0 / target.shape[1])
                target.copy_(src)
                loaded.append(key)
    return loaded
