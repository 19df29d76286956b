"""Index unpooling puts every value back exactly where pooling took it from."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from segnet_domains.model.unpool import IndexPool, IndexUnpool


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(2, 40),
    w=st.integers(2, 40),
    c=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    channels_last=st.booleans(),
    bf16=st.booleans(),
)
def test_unpool_restores_values_at_pooling_indices(
    h: int, w: int, c: int, seed: int, channels_last: bool, bf16: bool
) -> None:
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(seed))
    if bf16:  # channels-last bf16 on the CPU takes F.max_unpool2d, the others the scatter
        x = x.to(torch.bfloat16)
    if channels_last:  # scattered straight into a channels-last map
        x = x.contiguous(memory_format=torch.channels_last)
    pooled, idx, size = IndexPool()(x)
    assert pooled.shape[-2:] == ((h + 1) // 2, (w + 1) // 2)  # rounds up
    up = IndexUnpool()(pooled, idx, size)
    assert up.shape == x.shape  # exact size back, odd sizes included
    flat_up, flat_x = up.flatten(2), x.flatten(2)
    # at each index: the original value; everywhere else: zero
    assert torch.equal(flat_up.gather(2, idx.flatten(2)), flat_x.gather(2, idx.flatten(2)))
    mask = torch.zeros_like(flat_up, dtype=torch.bool).scatter_(2, idx.flatten(2), True)
    assert torch.count_nonzero(flat_up[~mask]) == 0
    # each kept value is its window's maximum
    assert torch.equal(pooled, F.max_pool2d(x, 2, 2, ceil_mode=True))


def test_unpool_matches_torch_max_unpool() -> None:
    x = torch.randn(1, 3, 17, 23)
    pooled, idx, size = IndexPool()(x)
    ours = IndexUnpool()(pooled, idx, size)
    ref = F.max_unpool2d(pooled, idx, 2, 2, output_size=size)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_unpool_keeps_channels_last(dtype: torch.dtype) -> None:
    """Channels-last in, channels-last out (odd sizes too), the values of ``F.max_unpool2d``."""
    x = torch.randn(2, 8, 21, 30).to(dtype).contiguous(memory_format=torch.channels_last)
    pooled, idx, size = IndexPool()(x)
    up = IndexUnpool()(pooled, idx, size)
    assert up.is_contiguous(memory_format=torch.channels_last) and up.dtype == dtype
    ref = F.max_unpool2d(pooled.float().contiguous(), idx.contiguous(), 2, 2, output_size=size)
    assert torch.equal(up.float().contiguous(), ref)


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_unpool_gradient_matches_the_scatter(channels_last: bool) -> None:
    """Training through the bf16 kernel (autocast: channel-first): the float32 scatter's gradients."""
    x = torch.randn(2, 8, 19, 26).bfloat16().float()  # values both dtypes hold: the same maxima
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grads = []
    for dtype in (torch.float32, torch.bfloat16):
        xi = x.to(dtype, copy=True).requires_grad_(True)
        pooled, idx, size = IndexPool()(xi)
        up = IndexUnpool()(pooled, idx, size)
        weight = torch.arange(up.numel(), dtype=torch.float32).view(up.shape) % 7  # exact in bf16
        (up.float() * weight).sum().backward()
        assert xi.grad is not None
        grads.append(xi.grad.float())
    assert grads[0].count_nonzero() > 0
    assert torch.equal(grads[0], grads[1])


def test_traced_bf16_unpool_keeps_the_exportable_scatter() -> None:
    """A traced graph (ONNX export traces) scatters; eager bf16 channels-last runs F.max_unpool2d."""
    x = torch.randn(1, 4, 10, 14).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    pooled, idx, size = IndexPool()(x)

    def unpool(p: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return IndexUnpool()(p, i, size)

    graph = str(torch.jit.trace(unpool, (pooled, idx)).graph)
    assert "aten::scatter" in graph and "max_unpool2d" not in graph
    with torch.autograd.profiler.profile() as prof:
        eager = unpool(pooled, idx)
    names = {e.name for e in prof.function_events}
    assert "aten::max_unpool2d" in names and "aten::scatter_" not in names
    assert torch.equal(eager, torch.jit.trace(unpool, (pooled, idx))(pooled, idx))
