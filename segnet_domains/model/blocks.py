"""The conv → BatchNorm → ReLU unit every SegNet stage is made of."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional as F
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

    #: Run the ReLU inside the convolution, as a oneDNN post-op (set by :meth:`fuse_relu`).
    relu_in_conv: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.relu_in_conv and x.device.type == "cpu" and not torch.is_grad_enabled()
        # compilers and exporters see the plain modules (inductor fuses them by itself)
        if fused and not (torch.compiler.is_compiling() or torch.jit.is_tracing()):
            c = self.conv
            return _conv_relu(x, c.weight, c.bias, c.padding, c.stride, c.dilation, c.groups)
        return self.act(self.norm(self.conv(x)))

    def fuse(self) -> None:
        """Fold BatchNorm into the conv (eval mode only); idempotent."""
        if isinstance(self.norm, nn.BatchNorm2d):
            self.conv = fuse_conv_bn_eval(self.conv.eval(), self.norm.eval())
            self.norm = nn.Identity()

    def fuse_relu(self) -> None:
        """After :meth:`fuse`: on the CPU, without gradients, apply the ReLU inside the convolution.

        oneDNN writes each output once, already rectified, instead of a
        convolution pass and a ReLU pass over it: one pass over the
        activations fewer, the same numbers up to rounding (bit for bit on
        SegNet's shapes here). Alternating passes, fused against plain, fp32,
        384×480 (torch 2.13, 2-core AMD EPYC, AVX2): medians of paired ratios
        0.99–1.08 for SegNet 8…64, 0.95–1.08 for the paper's SegNet: 2–4 %
        faster, within that machine's noise. It calls ``torch.ops.mkldnn._convolution_pointwise``,
        the op inductor emits for this fusion (eager PyTorch has no public
        one), only where :func:`relu_post_op_works` finds it present and
        correct for the weights' dtype. Training, autograd and
        ``torch.compile`` keep the plain modules.
        """
        if isinstance(self.norm, nn.Identity) and isinstance(self.act, nn.ReLU):
            self.relu_in_conv = relu_post_op_works(self.conv.weight.dtype)


def _conv_relu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, *geometry: object) -> torch.Tensor:
    return torch.ops.mkldnn._convolution_pointwise.default(x, w, b, *geometry, "relu", [None], "")


@functools.cache
def relu_post_op_works(dtype: torch.dtype) -> bool:
    """True when this torch and CPU run :func:`_conv_relu` in ``dtype``, giving conv + ReLU's numbers.

    Probed once per dtype on a small channels-last convolution: torch builds
    without oneDNN, or CPUs without the dtype's kernels (bf16 needs AVX512
    or AVX-NE-CONVERT), keep the plain modules. The two may round
    differently (oneDNN can pick another kernel for a fused primitive), so
    they are compared within the dtype's rounding.
    """
    g = torch.Generator().manual_seed(0)  # not the global stream: probing leaves the caller's draws alone
    w, b, x = (torch.randn(*shape, generator=g).to(dtype) for shape in ((8, 8, 3, 3), (8,), (1, 8, 16, 16)))
    w, x = (t.contiguous(memory_format=torch.channels_last) for t in (w, x))
    try:
        with torch.no_grad():
            fused = _conv_relu(x, w, b, (1, 1), (1, 1), (1, 1), 1)
            plain = torch.relu(F.conv2d(x, w, b, padding=1))
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        return torch.allclose(fused.float(), plain.float(), rtol=tol, atol=tol)
    except (AttributeError, RuntimeError, TypeError, NotImplementedError):  # absent, or another signature
        return False


def conv_stack(in_channels: int, out_channels: int, n_convs: int, kernel_size: int = 3) -> nn.Sequential:
    """``n_convs`` :class:`ConvBNAct` units, the first changing the channel count."""
    layers = [ConvBNAct(in_channels, out_channels, kernel_size)]
    layers += [ConvBNAct(out_channels, out_channels, kernel_size) for _ in range(n_convs - 1)]
    return nn.Sequential(*layers)
