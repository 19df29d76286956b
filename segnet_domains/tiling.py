"""Tiles for images too big for one forward pass: a pure window grid, blending weights, a blender.

Three small pieces, no file IO:

* :class:`TileGrid` — windows of ``tile_size`` that cover an ``H×W`` image
  with ``overlap`` pixels shared between neighbours; the last tile of a row or
  column is flush with the image edge and an image smaller than one tile gets
  one tile of its own size.
* :func:`blend_weights` — a smooth (raised-cosine or Gaussian) weight window
  that fades a tile's edges, where its predictions lack context, but never
  reaches zero, so every pixel stays covered.
* :class:`StreamBlender` — streaming stitcher: it accumulates weighted tile
  probabilities in raster order and hands back blocks of pixels as soon as no
  later tile touches them, keeping only the overlap rows the next tile row
  shares (``overlap × width``) and the current batch's columns. The raster
  tiler (:mod:`segnet_domains.geo`) streams scenes of any size with it.

:meth:`Segmenter.predict_proba_tiled <segnet_domains.inference.Segmenter.predict_proba_tiled>`
runs the model over a big in-memory 2D image with them, and the raster tiler
(:mod:`segnet_domains.geo.tiler`) over scenes of any size.

The overlap should cover the network's receptive field — the pixels near a
tile edge see zero padding instead of their neighbours — as torchgeo's
``GridGeoSampler`` documentation advises. SegNet's effective receptive field
is much smaller than its theoretical one; ``tile_size // 4`` (128 for 512
tiles) gives tiled results equal to whole-image inference on ≥ 99.5 % of
pixels for trained models (``tests/test_tiling.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from segnet_domains.devices import read_only_tensor

#: Tile edge used when neither the caller nor the checkpoint names one.
DEFAULT_TILE = 512

#: Smallest blending weight: tile edges fade towards it but never to zero.
WEIGHT_FLOOR = 1e-3


def default_overlap(tile_size: int) -> int:
    """Overlap used when none is given: a quarter of the tile (128 for 512-pixel tiles)."""
    return max(0, int(tile_size) // 4)


@dataclass(frozen=True)
class Tile:
    """One window of a :class:`TileGrid` (pixel offsets and size).

    Attributes:
        row: first row.
        col: first column.
        height: rows.
        width: columns.
        index: ``(tile row, tile column)`` position in the grid.
    """

    row: int
    col: int
    height: int
    width: int
    index: tuple[int, int] = (0, 0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(row slice, column slice)`` for indexing ``…×H×W`` arrays."""
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of (at most) ``tile`` pixels covering ``length`` pixels with ``overlap``.

    As few tiles as steps of at most ``tile - overlap`` (rounded down to a
    multiple of ``align``) allow, spread evenly: the first starts at 0, the
    last ends exactly at ``length``, and neighbours share ``overlap`` pixels
    or a little more, all about alike (steps differ by at most ``align``).
    Even spreading, rather than fixed steps and a last tile pushed back
    against the edge, keeps the rows two tile rows share (what a streaming
    blender holds) near ``overlap`` instead of up to a whole tile. With
    ``align > 1`` every start is a multiple of ``align`` and the last tile,
    starting at the first multiple of ``align`` at or after
    ``length - tile``, may be up to ``align - 1`` pixels shorter. Aligning
    starts to the network's total stride (32 for SegNet) keeps every tile on
    the same pooling grid as the whole image, so a pixel's prediction does
    not depend on which tile it came from. ``length <= tile`` gives ``[0]``.

    Raises:
        ValueError: ``length``, ``tile`` or ``align`` below 1, or ``overlap``
            not in ``[0, tile)``.
    """
    if length < 1 or tile < 1 or align < 1:
        raise ValueError(f"length, tile and align must be positive (got {length}, {tile}, {align})")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, {tile}) for {tile}-pixel tiles, got {overlap}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    if stride < align:  # tiles too small to step on the grid: plain flush tiling
        align = 1
    stride -= stride % align
    last = -(-(length - tile) // align) * align
    steps = -(-last // stride)
    # i·last/steps rounded down to the grid: each step is at most `stride` (a multiple of align)
    return [i * last // steps // align * align for i in range(steps)] + [last]


@dataclass(frozen=True)
class TileGrid:
    """Windows covering an ``height×width`` image, in row-major order.

    Build with :meth:`create`. Tiles are at most ``tile_height×tile_width``
    (``tile_size`` clipped to the image); with ``align > 1`` the last row and
    column of tiles may be a little shorter (see :func:`tile_starts`), so a
    grid has at most four tile shapes.

    Example:
        >>> grid = TileGrid.create(1000, 700, tile_size=512, overlap=128)
        >>> grid.row_starts, grid.col_starts
        ((0, 384, 488), (0, 188))
        >>> TileGrid.create(1000, 700, 512, 128, align=32).row_starts
        (0, 384, 512)
    """

    height: int
    width: int
    tile_height: int
    tile_width: int
    overlap: int
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]

    @classmethod
    def create(
        cls, height: int, width: int, tile_size: int, overlap: int | None = None, align: int = 1
    ) -> TileGrid:
        """Grid for an image of ``height×width`` pixels.

        Args:
            height: image rows.
            width: image columns.
            tile_size: tile edge (clipped to the image).
            overlap: pixels shared by neighbouring tiles (default
                :func:`default_overlap`); it should cover the receptive field.
            align: tile starts are multiples of this (the network's total
                stride keeps tiles on the whole image's pooling grid).
        """
        overlap = default_overlap(tile_size) if overlap is None else int(overlap)
        return cls(
            height=int(height),
            width=int(width),
            tile_height=min(int(tile_size), int(height)),
            tile_width=min(int(tile_size), int(width)),
            overlap=overlap,
            row_starts=tuple(tile_starts(height, tile_size, overlap, align)),
            col_starts=tuple(tile_starts(width, tile_size, overlap, align)),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """``(tile rows, tile columns)``."""
        return len(self.row_starts), len(self.col_starts)

    def __len__(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def row_height(self, i: int) -> int:
        """Height of the tiles of tile row ``i`` (the last row may be shorter when aligned)."""
        return min(self.tile_height, self.height - self.row_starts[i])

    def row(self, i: int) -> list[Tile]:
        """The tiles of tile row ``i``, left to right."""
        r, h = self.row_starts[i], self.row_height(i)
        return [
            Tile(r, c, h, min(self.tile_width, self.width - c), (i, j)) for j, c in enumerate(self.col_starts)
        ]

    def __iter__(self) -> Iterator[Tile]:
        for i in range(len(self.row_starts)):
            yield from self.row(i)

    def rows_done_after(self, i: int) -> int:
        """Image rows ``[0, n)`` that no tile after tile row ``i`` touches: ``n``."""
        return self.row_starts[i + 1] if i + 1 < len(self.row_starts) else self.height

    def seam_distance(self) -> np.ndarray:
        """``H×W`` distance (pixels, Chebyshev) to the nearest inner tile edge; for diagnostics and tests."""
        ys = _edge_distance(self.height, self.row_starts, self.tile_height)
        xs = _edge_distance(self.width, self.col_starts, self.tile_width)
        return np.minimum(ys[:, None], xs[None, :])


def _edge_distance(length: int, starts: Sequence[int], tile: int) -> np.ndarray:
    edges = sorted({e for s in starts for e in (s, min(s + tile, length))} - {0, length})
    pos = np.arange(length)
    if not edges:
        return np.full(length, length, np.int64)
    e = np.asarray(edges)
    return np.abs(pos[:, None] - e[None, :] + 0.5).min(1).astype(np.int64)


def _ramp(n: int, overlap: int, kind: str, floor: float) -> np.ndarray:
    pos = np.arange(n, dtype=np.float64)
    if kind == "cosine":
        if overlap <= 0:
            return np.ones(n, np.float64)
        d = np.minimum(pos, n - 1 - pos) + 0.5  # distance of the pixel centre from the nearer edge
        w = 0.5 - 0.5 * np.cos(np.pi * np.clip(d / overlap, 0.0, 1.0))
    elif kind == "gaussian":
        sigma = 0.125 * n  # MONAI's sliding-window default sigma_scale
        w = np.exp(-0.5 * ((pos - (n - 1) / 2) / max(sigma, 1e-6)) ** 2)
    else:
        raise ValueError(f"unknown blending kind {kind!r} (cosine or gaussian)")
    return floor + (1.0 - floor) * w


def blend_weights(
    height: int, width: int, overlap: int, kind: str = "cosine", floor: float = WEIGHT_FLOOR
) -> np.ndarray:
    """Smooth ``height×width`` float32 weights for blending overlapping tiles.

    ``"cosine"`` is 1 in the tile's core and falls with a raised cosine over
    the ``overlap`` pixels next to each edge, so a pixel covered by one tile
    keeps that tile's prediction unchanged and the hand-over between two tiles
    is seamless. ``"gaussian"`` is MONAI's importance map (sigma = size/8).
    Both are bounded below by ``floor`` (> 0): the weighted average is defined
    at every pixel, image corners included.

    Args:
        height: tile rows.
        width: tile columns.
        overlap: pixels shared with the neighbouring tile (``"cosine"`` ramp length).
        kind: ``"cosine"`` or ``"gaussian"``.
        floor: smallest weight.
    """
    if not 0.0 < floor <= 1.0:
        raise ValueError(f"floor must be in (0, 1], got {floor}")
    wy = _ramp(height, overlap, kind, floor)
    wx = _ramp(width, overlap, kind, floor)
    return np.outer(wy, wx).astype(np.float32)


@dataclass(frozen=True)
class BlendedBlock:
    """Finished pixels from :meth:`StreamBlender.add`: weighted sums over rows/columns no later tile touches.

    Attributes:
        row: first image row.
        col: first image column.
        sums: ``channels × n × w`` weighted sums (the blended value is ``sums / weights``),
            a float32 tensor on the blender's device.
        weights: ``n × w`` weight sums (> 0), on the same device.
    """

    row: int
    col: int
    sums: torch.Tensor
    weights: torch.Tensor


class StreamBlender:
    """Stitch the tiles of a :class:`TileGrid` in raster order with memory bounded by the overlap.

    Feed the tiles in grid order (row by row, left to right; any batching)
    with :meth:`add`. Each call returns the block of pixels it finished: the
    columns no later tile of this row reaches, and of those the rows no later
    tile row reaches. It keeps only

    * a *carry*: the weighted sums of the rows the next tile row overlaps,
      ``channels × overlap rows × width`` (the grid's largest vertical overlap,
      about ``overlap``: :func:`tile_starts` spreads tiles evenly);
    * the columns of the current batch of tiles (``channels × tile height ×``
      the batch's span), until the next batch finishes them.

    So memory does not depend on the image's height, and on its width only
    through the carry — a quarter of a band of whole tile rows at the default
    ``overlap = tile // 4``. Everything lives on ``device``, where the model
    runs: the tiles' probabilities are blended there and only finished
    results need to cross to the host.

    Args:
        grid: the tile grid.
        channels: channels per pixel (classes; more for extra statistics).
        kind: blending window (see :func:`blend_weights`).
        start_row: first tile row that will be added (rows before it are
            treated as never added: on resume, recompute from a row whose
            output is discarded).
        device: where the sums are kept and blended (default: the CPU).
    """

    def __init__(
        self,
        grid: TileGrid,
        channels: int,
        kind: str = "cosine",
        start_row: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.grid = grid
        self.kind = kind
        self.channels = channels
        self.device = torch.device(device)
        overlaps = [
            grid.row_starts[i] + grid.row_height(i) - grid.row_starts[i + 1] for i in range(grid.shape[0] - 1)
        ]
        rows = max(overlaps, default=0)
        self.carry = self._zeros(channels, rows, grid.width)
        self.carry_weights = self._zeros(rows, grid.width)
        self.row_index = start_row
        self._next = 0  # index (in the row) of the next tile expected
        self._done = 0  # columns [0, _done) of the current row are emitted
        self._sums = self._zeros(channels, 0, 0)  # columns [_done, _done + width) in progress
        self._weights = self._zeros(0, 0)
        self._windows: dict[tuple[int, int], torch.Tensor] = {}

    def _zeros(self, *shape: int) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.float32, device=self.device)

    def weights(self, tile: Tile) -> torch.Tensor:
        """The blending window of ``tile``'s shape, on the blender's device (made once per shape)."""
        key = (tile.height, tile.width)
        if key not in self._windows:
            w = blend_weights(tile.height, tile.width, self.grid.overlap, self.kind)
            self._windows[key] = torch.from_numpy(w).to(self.device)
        return self._windows[key]

    def add(self, tiles: Sequence[Tile], *values: torch.Tensor | np.ndarray | Sequence[Any]) -> BlendedBlock:
        """Accumulate consecutive tiles of the current tile row; return what is now finished.

        Args:
            tiles: the next tiles of the row, in order.
            values: one ``channels × tile.height × tile.width`` array or tensor
                per tile (a ``B×channels×h×w`` tensor or array is one per tile);
                not modified. Several such arguments are channel groups
                stacked in order (``B×c₁×h×w``, ``B×c₂×h×w`` … with
                ``c₁ + c₂ + … = channels``), blended as if concatenated:
                the caller saves the concatenated copy (a 5-channel batch of
                eight 512² tiles is 42 MB).

        Returns:
            The finished :class:`BlendedBlock` (possibly zero columns wide; zero
            rows when the next tile row starts where this one does). After the
            row's last tile, the row is closed and the next one begins.

        Raises:
            ValueError: tiles out of grid order, values for another number of tiles or channels.
        """
        grid, i = self.grid, self.row_index
        if not len(tiles) or not values or any(len(tiles) != len(v) for v in values):
            sizes = ", ".join(str(len(v)) for v in values) or "no"
            raise ValueError(f"{len(tiles)} tiles and {sizes} value arrays (need the same, at least 1)")
        if sum(len(group[0]) for group in values) != self.channels:
            got = " + ".join(str(len(group[0])) for group in values)
            raise ValueError(f"values with {got} channels for a blender of {self.channels}")
        for j, t in enumerate(tiles):
            if t.index != (i, self._next + j):
                raise ValueError(f"tile {t.index} added, expected {(i, self._next + j)} (grid order)")
        top, height = tiles[0].row, tiles[0].height  # every tile of a grid row has them
        self._extend(tiles[-1].col + tiles[-1].width, height)  # once a batch: its last tile reaches farthest
        for j, t in enumerate(tiles):
            w = self.weights(t)
            cols = slice(t.col - self._done, t.col - self._done + t.width)
            first = 0
            for group in values:
                v = read_only_tensor(group[j], self.device)
                self._sums[first : first + v.shape[0], :, cols].addcmul_(v, w)
                first += v.shape[0]
            self._weights[:, cols] += w
            self._next += 1
        last = self._next == grid.shape[1]
        end = grid.width if last else grid.col_starts[self._next]  # columns before it are finished
        n = grid.rows_done_after(i) - top  # rows no later tile row reaches
        k = end - self._done
        block = BlendedBlock(top, self._done, self._sums[:, :n, :k], self._weights[:n, :k])
        rest = height - n  # rows the next tile row overlaps: carried
        span = slice(self._done, end)
        self.carry[:, :rest, span] = self._sums[:, n:height, :k]
        self.carry_weights[:rest, span] = self._weights[n:height, :k]
        self.carry[:, rest:, span] = 0.0
        self.carry_weights[rest:, span] = 0.0
        # keep the unfinished columns (a copy: the block above is a view of the old buffer)
        self._sums, self._weights = self._sums[:, :, k:].clone(), self._weights[:, k:].clone()
        self._done = end
        if last:
            self.row_index += 1
            self._next, self._done = 0, 0
            self._sums, self._weights = self._zeros(self.channels, 0, 0), self._zeros(0, 0)
        return block

    def _extend(self, end: int, height: int) -> None:
        """Grow the in-progress buffer to columns ``[_done, end)``, new columns starting from the carry."""
        have = self._sums.shape[2]
        need = end - self._done
        if need <= have:
            return
        sums = self._zeros(self.channels, height, need)
        weights = self._zeros(height, need)
        if have:  # the previous batch's unfinished columns
            sums[:, :, :have] = self._sums
            weights[:, :have] = self._weights
        # columns seen for the first time in this row start from what the row above left
        new = slice(self._done + have, self._done + need)
        rows = min(self.carry.shape[1], height)
        sums[:, :rows, have:] = self.carry[:, :rows, new]
        weights[:rows, have:] = self.carry_weights[:rows, new]
        self._sums, self._weights = sums, weights

    def blended(self, block: BlendedBlock) -> torch.Tensor:
        """``channels × n × w`` weighted mean of a block (a new tensor on the blender's device)."""
        return block.sums / block.weights[None]


# --------------------------------------------------------------------------- batches


def tile_batches(tiles: Sequence[Tile], batch_size: int) -> Iterator[list[Tile]]:
    """Split ``tiles`` into batches of at most ``batch_size`` tiles of one shape (order kept per shape)."""
    groups: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        groups.setdefault((t.height, t.width), []).append(t)
    bs = max(1, int(batch_size))
    for group in groups.values():
        for start in range(0, len(group), bs):
            yield group[start : start + bs]


def grid_batches(grid: TileGrid, batch_size: int) -> Iterator[list[list[Tile]]]:
    """A whole grid's tiles in full batches: grid order, across tile rows, one shape per batch.

    Each batch is a list of *parts*, the consecutive tiles it takes from one
    tile row (a part ends a row or the batch). Unlike :func:`tile_batches`
    per row, batches are full (``batch_size`` tiles) wherever the shapes
    allow, so a narrow scene runs the same batches as a wide one (the model's
    memory does not depend on the scene's width), and the split depends on
    the grid alone: a run resumed from any row computes the same batches.
    """
    bs = max(1, int(batch_size))
    parts: list[list[Tile]] = []
    count, shape = 0, (0, 0)
    for t in grid:
        if parts and ((t.height, t.width) != shape or count == bs):
            yield parts
            parts, count = [], 0
        if not parts or parts[-1][0].index[0] != t.index[0]:
            parts.append([])
        parts[-1].append(t)
        count, shape = count + 1, (t.height, t.width)
    if parts:
        yield parts
