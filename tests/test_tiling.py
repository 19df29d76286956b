"""The tile grid, blending weights and the row-band blender (the tiled predictor: ``test_inference.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segnet_domains.tiling import (
    StreamBlender,
    TileGrid,
    blend_weights,
    default_overlap,
    grid_batches,
    tile_batches,
    tile_starts,
)


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(1, 3000),
    tile=st.integers(1, 700),
    frac=st.floats(0.0, 0.99),
    align=st.sampled_from([1, 8, 32]),
)
def test_tile_starts_cover_flush_and_step(length: int, tile: int, frac: float, align: int) -> None:
    overlap = min(int(tile * frac), tile - 1)
    starts = tile_starts(length, tile, overlap, align)
    ends = [min(s + tile, length) for s in starts]
    covered = np.zeros(length, bool)
    for s, e in zip(starts, ends):
        assert s >= 0 and e <= length
        covered[s:e] = True
    assert covered.all()
    assert starts[0] == 0 and ends[-1] == length  # last tile flush with the edge
    steps = np.diff(starts)
    assert (steps > 0).all() and (steps <= tile - overlap).all()
    stride = tile - overlap
    stride -= stride % align if stride >= align else 0
    # spread evenly: as few tiles as fixed steps of the stride need, steps all about alike
    assert len(starts) == (1 if length <= tile else -(-(length - tile) // stride) + 1)
    assert len(steps) == 0 or steps.max() - steps.min() <= (align if stride >= align else 1)
    # each neighbour pair shares at least `overlap` pixels
    assert all(e0 - s1 >= overlap for e0, s1 in zip(ends, starts[1:]))
    if align > 1 and tile - overlap >= align and length > tile:  # on the network's pooling grid
        assert all(s % align == 0 for s in starts)
        assert all(e - s > tile - align for s, e in zip(starts, ends))


def test_grid_small_image_is_one_tile() -> None:
    grid = TileGrid.create(37, 5, tile_size=512, overlap=128)
    assert len(grid) == 1
    (tile,) = list(grid)
    assert (tile.row, tile.col, tile.height, tile.width) == (0, 0, 37, 5)


def test_grid_rows_and_done() -> None:
    grid = TileGrid.create(1000, 700, tile_size=512, overlap=128)
    assert grid.row_starts == (0, 244, 488) and grid.col_starts == (0, 188)  # spread evenly
    assert [t.index for t in grid] == [(i, j) for i in range(3) for j in range(2)]
    assert [grid.rows_done_after(i) for i in range(3)] == [244, 488, 1000]
    assert default_overlap(512) == 128
    aligned = TileGrid.create(1000, 700, tile_size=512, overlap=128, align=32)
    assert aligned.row_starts == (0, 256, 512) and aligned.col_starts == (0, 192)
    assert [(t.height, t.width) for t in aligned.row(2)] == [(488, 512), (488, 508)]


@pytest.mark.parametrize("bad", [(10, 0, 0), (0, 4, 0), (10, 4, 4), (10, 4, -1)])
def test_tile_starts_rejects(bad: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        tile_starts(*bad)


@pytest.mark.parametrize("kind", ["cosine", "gaussian"])
def test_blend_weights_smooth_positive_symmetric(kind: str) -> None:
    w = blend_weights(64, 48, overlap=16, kind=kind)
    assert w.shape == (64, 48) and w.dtype == np.float32
    assert w.min() > 0 and w.max() <= 1.0
    np.testing.assert_allclose(w, w[::-1, ::-1], rtol=1e-6)
    assert w[0, 0] < 0.01 and w[32, 24] > 0.9  # faded edge, full centre
    if kind == "cosine":
        assert (w[16:-16, 16:-16] == 1).all()  # the core keeps the tile's own prediction
        # no jumps between neighbouring pixels: smooth hand-over
        assert np.abs(np.diff(w[32])).max() < 0.1


def test_blend_weights_no_overlap_is_flat() -> None:
    assert (blend_weights(8, 8, overlap=0) == 1).all()


@pytest.mark.parametrize(
    ("shape", "batch", "overlap"),
    [((1000, 700), 2, 64), ((300, 333), 1, 64), ((40, 41), 3, 64), ((1100, 1900), 3, 64), ((600, 800), 4, 0)],
)
@pytest.mark.numerics
def test_stream_blender_equals_whole_blend(shape: tuple[int, int], batch: int, overlap: int) -> None:
    """Raster-order streaming in batches gives exactly the in-memory weighted average, each pixel once."""
    h, w = shape
    rng = np.random.default_rng(0)
    grid = TileGrid.create(h, w, tile_size=256, overlap=overlap, align=32)
    values = {t.index: rng.random((3, t.height, t.width), dtype=np.float32) for t in grid}
    acc, wsum = np.zeros((3, h, w), np.float64), np.zeros((h, w), np.float64)
    for t in grid:
        wt = blend_weights(t.height, t.width, grid.overlap)
        acc[(slice(None), *t.slices)] += values[t.index] * wt
        wsum[t.slices] += wt
    expected = acc / wsum

    blender = StreamBlender(grid, channels=3)
    out = np.full((3, h, w), np.nan, np.float32)
    seen = np.zeros((h, w), np.int64)
    blocks = []
    for i in range(grid.shape[0]):
        for chunk in tile_batches(grid.row(i), batch):
            b = blender.add(chunk, [values[t.index].copy() for t in chunk])
            n, k = b.weights.shape
            out[:, b.row : b.row + n, b.col : b.col + k] = blender.blended(b)
            seen[b.row : b.row + n, b.col : b.col + k] += 1
            blocks.append(b)
    assert (seen == 1).all()  # every pixel handed back exactly once
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    for b in blocks:  # a block handed back is left as it was by the tiles added after it
        n, k = b.weights.shape
        assert torch.equal(blender.blended(b), torch.from_numpy(out[:, b.row : b.row + n, b.col : b.col + k]))
    # memory: the carry holds the rows two tile rows share, not a band of whole tile rows
    shared = max(
        (grid.row_starts[i] + grid.tile_height - grid.row_starts[i + 1] for i in range(grid.shape[0] - 1)),
        default=0,
    )
    assert blender.carry.shape == (3, shared, w)
    # tiles spread evenly: no tile row pushed back against the edge shares most of a tile with the one above
    assert shared <= (grid.tile_height + grid.overlap) // 2 + 32


def test_stream_blender_channel_groups_equal_the_concatenation() -> None:
    """``add(tiles, a, b)`` blends ``a``'s channels then ``b``'s, bit for bit as ``add(tiles, cat(a, b))``."""
    grid = TileGrid.create(300, 400, tile_size=128, overlap=32, align=16)
    rng = np.random.default_rng(1)
    whole, grouped = StreamBlender(grid, channels=4), StreamBlender(grid, channels=4)
    for i in range(grid.shape[0]):
        for chunk in tile_batches(grid.row(i), 3):
            values = torch.from_numpy(
                rng.random((len(chunk), 4, chunk[0].height, chunk[0].width), np.float32)
            )
            a = whole.add(chunk, values)
            b = grouped.add(chunk, values[:, :3], values[:, 3:])
            assert (a.row, a.col) == (b.row, b.col)
            assert torch.equal(a.sums, b.sums) and torch.equal(a.weights, b.weights)
    with pytest.raises(ValueError, match=r"values with 3 \+ 2 channels for a blender of 4"):
        grouped.add(grid.row(0)[:1], np.zeros((1, 3, 128, 128)), np.zeros((1, 2, 128, 128)))
    with pytest.raises(ValueError, match="2 tiles and 2, 1 value arrays"):
        StreamBlender(grid, channels=2).add(
            grid.row(0)[:2], np.zeros((2, 1, 128, 128)), np.zeros((1, 1, 128, 128))
        )


def test_stream_blender_refuses_tiles_out_of_order() -> None:
    grid = TileGrid.create(300, 300, tile_size=128, overlap=32)
    blender = StreamBlender(grid, channels=1)
    tiles = grid.row(0)
    with pytest.raises(ValueError, match=r"tile \(0, 1\) added, expected \(0, 0\)"):
        blender.add([tiles[1]], [np.ones((1, 128, 128), np.float32)])


@pytest.mark.parametrize(("h", "w", "batch"), [(300, 200, 4), (257, 1000, 3), (64, 64, 8), (700, 130, 5)])
def test_grid_batches_are_full_in_grid_order_across_rows(h: int, w: int, batch: int) -> None:
    """Every tile once, in grid order; batches full except before a shape change or at the end;
    each part one tile row's consecutive tiles; the same split whatever row a run resumes from."""
    grid = TileGrid.create(h, w, 64, 16, align=8)
    batches = list(grid_batches(grid, batch))
    flat = [t for b in batches for part in b for t in part]
    assert flat == list(grid)
    for k, b in enumerate(batches):
        tiles = [t for part in b for t in part]
        assert len({(t.height, t.width) for t in tiles}) == 1 and len(tiles) <= batch
        nxt = batches[k + 1][0][0] if k + 1 < len(batches) else None
        if nxt is not None and (nxt.height, nxt.width) == (tiles[0].height, tiles[0].width):
            assert len(tiles) == batch
        for part in b:
            assert len({t.index[0] for t in part}) == 1
            assert [t.index[1] for t in part] == list(range(part[0].index[1], part[-1].index[1] + 1))
