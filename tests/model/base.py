"""One test mixin for every model variant: shapes at odd sizes, save/load, BN folding, script."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from segnet_domains import load_checkpoint, save_checkpoint
from segnet_domains.model.blocks import ConvBNAct, relu_post_op_works

ODD_SIZES = [(97, 131), (33, 35), (32, 32), (5, 7), (2, 2)]


class ModelTestMixin:
    """Subclass and set ``model_class`` and ``kwargs``; every variant gets the same checks."""

    model_class: ClassVar[type]
    kwargs: ClassVar[dict[str, Any]]

    def make(self, in_channels: int = 3, out_channels: int = 4) -> torch.nn.Module:
        torch.manual_seed(0)
        return self.model_class(in_channels, out_channels, **self.kwargs)

    @pytest.mark.parametrize("size", ODD_SIZES)
    @pytest.mark.parametrize("in_channels", [1, 3, 5])
    def test_output_shape(self, size: tuple[int, int], in_channels: int) -> None:
        model = self.make(in_channels, 4).eval()
        with torch.no_grad():
            out = model(torch.randn(1, in_channels, *size))
        assert out.shape == (1, 4, *size)
        assert torch.isfinite(out).all()

    def test_batch_independence(self) -> None:
        model = self.make().eval()
        x = torch.randn(3, 3, 40, 44)
        with torch.no_grad():
            whole = model(x)
            single = model(x[1:2])
        torch.testing.assert_close(whole[1:2], single, rtol=1e-4, atol=1e-4)

    def test_checkpoint_round_trip_identical(self, tmp_path: Path) -> None:
        model = self.make().eval()
        path = save_checkpoint(tmp_path / "m.pt", model, class_names=["a", "b", "c", "d"], domain="aerial")
        loaded = load_checkpoint(path)
        x = torch.randn(2, 3, 45, 51)
        with torch.no_grad():
            assert torch.equal(model(x), loaded.model(x))
        assert loaded.info.architecture == self.model_class.__name__
        assert loaded.info.class_names == ["a", "b", "c", "d"]

    def test_fuse_bn_matches(self) -> None:
        model = self.make().eval()
        # make BN statistics non-trivial so folding has something to fold
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
        x = torch.randn(1, 3, 37, 41)
        with torch.no_grad():
            ref = model(x)
            fused = model.fuse_bn()(x)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        torch.testing.assert_close(fused, ref, rtol=1e-3, atol=1e-3)

    def test_fuse_relu_matches_and_keeps_autograd(self) -> None:
        """ReLU as a oneDNN post-op: conv + ReLU's numbers without gradients, the plain modules with them."""
        model = self.make().fuse_bn()
        x = torch.randn(2, 3, 37, 41).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            ref = model(x)
        model.fuse_relu()
        units = [m for m in model.modules() if isinstance(m, ConvBNAct)]
        works = relu_post_op_works(torch.float32)
        assert [m.relu_in_conv for m in units] == [works and isinstance(m.act, torch.nn.ReLU) for m in units]
        with torch.no_grad():
            torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)
        x.requires_grad_(True)
        model(x).sum().backward()  # autograd runs the plain modules: the fused op has no derivative
        assert x.grad is not None and float(x.grad.abs().sum()) > 0

    def test_gradients_reach_first_conv(self) -> None:
        model = self.make().train()
        loss = model(torch.randn(2, 3, 32, 36)).logsumexp(1).mean()
        loss.backward()
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        assert first.weight.grad is not None and float(first.weight.grad.abs().sum()) > 0

    @pytest.mark.slow
    def test_torchscript_trace(self) -> None:
        model = self.make().eval()
        x = torch.randn(1, 3, 64, 64)
        traced = torch.jit.trace(model, x)
        with torch.no_grad():
            np.testing.assert_allclose(traced(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-4)
