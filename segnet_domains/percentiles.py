"""Exact percentiles in linear time, and the percentile range scaling of the ``percentile`` normalisation.

The numbers are numpy's default (``method="linear"``): for ``n`` values and
percentile ``q`` the virtual index is ``(n - 1) · q / 100`` and the result
interpolates the two order statistics around it exactly as
``np.percentile`` does (its ``_lerp``, in float64). What differs is how the
order statistics are found:

* integer pixels of at most 16 bits (``bool``, ``uint8``, ``int8``,
  ``uint16``, ``int16``; MRI volumes and satellite scenes) — an exact
  histogram (``np.bincount`` in bounded chunks) and its cumulative sum: one
  pass, no copy of the image;
* float32 on the CPU (above a million values) — a histogram of the high 16
  bits of the values' ordered bit patterns, then ``np.partition`` of only the
  buckets that hold the wanted order statistics;
* anything else on the CPU — ``np.partition`` (introselect) at the few
  positions needed: linear time, one copy of a channel;
* a torch tensor on an accelerator — ``torch.kthvalue`` on the device
  (radix select on CUDA); only the handful of order statistics cross to the
  host.

MONAI's ``ScaleIntensityRangePercentiles`` (``torch.quantile`` or
``np.percentile``: a full sort of every channel, once per percentile) gives
the same numbers (bit for bit with ``like_monai=True``, which keeps its
float32 interpolation); it is deliberately not used on this hot path, where it
took most of the time of a small network's inference. The scaling
(:func:`scale_range`) keeps MONAI ``ScaleIntensityRange``'s semantics
(``b_min=0, b_max=1, clip=True``; a channel whose two percentiles coincide
is only shifted, ``x - lower``) and runs on the tensor's own device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat

import numpy as np
import torch

from segnet_domains.devices import TORCH_LACKS, pixels_tensor, read_only_tensor

#: Integer dtypes whose values are histogrammed (at most 2**16 bins).
HISTOGRAM_DTYPES = frozenset(np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.uint16, np.int16))
#: Elements per ``np.bincount`` call: bounds its int64 temporary to 8 MiB.
_CHUNK = 1 << 20
#: Float32 channels above this many values take the radix-histogram path (below, one partition is as fast).
RADIX_MIN_VALUES = 1 << 20

Array = np.ndarray | torch.Tensor


def _positions(n: int, q: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy's ``linear`` method: (previous index, next index, gamma) for each percentile of ``n`` values."""
    virtual = (n - 1) * (np.asarray(q, np.float64) / 100)
    prev = np.floor(virtual)
    gamma = virtual - prev
    prev = prev.astype(np.int64)
    nxt = prev + 1
    above, below = virtual >= n - 1, virtual < 0
    prev[above], nxt[above] = n - 1, n - 1
    prev[below], nxt[below] = 0, 0
    return prev, nxt, gamma


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's ``_lerp``, in float64: ``a + (b - a)·t``, from the upper end when ``t ≥ 0.5``."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def _histogram(flat: np.ndarray) -> np.ndarray:
    """Counts of each bit pattern of unsigned 8- or 16-bit ``flat``.

    Bytes are counted by ``torch.bincount`` as they are: 3× faster than
    ``np.bincount``, which copies them to int64 first (173k bytes: 0.08 against
    0.25 ms); torch has no uint16 bincount, so 16-bit values go through
    ``np.bincount`` in bounded chunks.
    """
    bins = 1 << (8 * flat.dtype.itemsize)
    if bins == 256:
        return torch.bincount(read_only_tensor(flat), minlength=bins).numpy()
    counts = np.zeros(bins, np.int64)
    for start in range(0, flat.size, _CHUNK):
        counts += np.bincount(flat[start : start + _CHUNK], minlength=bins)
    return counts


def _order_stats_histogram(flat: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """The ``ks``-th smallest values (0-based) of small-range integer ``flat``, by an exact histogram."""
    if flat.dtype.kind == "b":
        flat = flat.view(np.uint8)
    signed = flat.dtype.kind == "i"
    if signed:  # count the bit patterns; negative values are the upper half, rolled to the front below
        flat = flat.view(np.dtype(f"u{flat.dtype.itemsize}"))
    counts, offset = _histogram(flat), 0
    if signed:
        counts, offset = np.roll(counts, counts.size // 2), -(counts.size // 2)
    cum = np.cumsum(counts)
    return np.searchsorted(cum, ks, side="right").astype(np.int64) + offset


def _order_stats_float32(flat: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """The ``ks``-th smallest values of native float32 ``flat`` (contiguous, no NaN), by a radix histogram.

    The high 16 bits of a float32, with the sign bit flipped for positive
    values and all bits flipped for negative ones, order the values (IEEE 754):
    one histogram of those keys finds the bucket of each order statistic and
    its rank inside, and only that bucket's values are partitioned. About
    twice as fast as ``np.partition`` of the whole channel, and no full copy.
    The keys, their counts and the buckets' members are found in parts of
    ``flat``, one per torch intra-op thread (numpy's passes release the GIL):
    a 197×233×189 volume's percentiles 45 → 33 ms on 2 threads (2-core AMD
    EPYC Zen 4).
    """
    parts = np.array_split(flat, max(1, min(torch.get_num_threads(), flat.size // RADIX_MIN_VALUES)))
    with ThreadPoolExecutor(len(parts), thread_name_prefix="segnet-radix") as pool:
        keyed = list(pool.map(_radix_keys_and_counts, parts))
        cum = np.cumsum(np.sum([counts for _, counts in keyed], axis=0))
        buckets = np.searchsorted(cum, ks, side="right")
        out = np.empty(len(ks), np.float64)
        for bucket in np.unique(buckets):
            members = np.flatnonzero(buckets == bucket)
            ranks = ks[members] - (cum[bucket - 1] if bucket else 0)
            found = pool.map(_bucket_members, parts, [keys for keys, _ in keyed], repeat(bucket))
            out[members] = np.partition(np.concatenate(list(found)), np.unique(ranks))[ranks]
    return out


def _bucket_members(flat: np.ndarray, keys: np.ndarray, bucket: int) -> np.ndarray:
    """The values of ``flat`` whose radix key is ``bucket``."""
    return flat[keys == bucket]


def _radix_keys_and_counts(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order-preserving high-16-bit keys of float32 ``flat`` and their histogram."""
    high = flat.view(np.uint16)[1::2] if np.little_endian else flat.view(np.uint16)[0::2]
    keys = high >> 15  # one buffer, then in place: each fresh temporary is page faults and a pass
    keys *= np.uint16(0x7FFF)
    keys += np.uint16(0x8000)
    keys ^= high
    return keys, _histogram(keys)


def _flat(values: Array) -> Array:
    """All of ``values`` as one axis, in memory order where that needs no copy (order does not matter).

    Always contiguous. A volume seen slice-axis first (``np.moveaxis``) is
    still one block of memory: ``reshape(-1)`` would copy it into C order,
    ``ravel(order="K")`` walks it as it lies (30 ms of the 70 ms a 197×233×189 float32 volume's
    percentiles took, 2-core AMD EPYC Zen 4). A tensor on an accelerator is
    flattened there.
    """
    if isinstance(values, torch.Tensor):
        if values.device.type != "cpu":
            return values.reshape(-1)
        values = values.numpy()
    return np.ravel(np.asarray(values), order="K")


def _order_stats(flat: Array, ks: np.ndarray) -> np.ndarray:
    """The ``ks``-th smallest values (0-based) of the 1D ``flat``, as float64, in linear time."""
    if isinstance(flat, torch.Tensor):  # on an accelerator: :func:`_flat` hands CPU tensors over as numpy
        x = (
            flat
            if flat.is_floating_point()
            else flat.to(torch.float64 if flat.element_size() > 2 else torch.float32)
        )
        if x.dtype == torch.float64 and x.device.type == "mps":
            x = x.float()
        vals = torch.stack([torch.kthvalue(x, int(k) + 1).values for k in np.unique(ks)])
        lookup = dict(zip(np.unique(ks).tolist(), vals.double().cpu().numpy()))
        return np.array([lookup[int(k)] for k in ks], np.float64)
    if flat.dtype in HISTOGRAM_DTYPES:
        return _order_stats_histogram(flat, ks).astype(np.float64)
    if flat.dtype == np.dtype(np.float32) and flat.flags.c_contiguous and flat.size > RADIX_MIN_VALUES:
        return _order_stats_float32(flat, ks)
    uniq = np.unique(ks)
    part = np.partition(flat, uniq)
    return part[ks].astype(np.float64)


#: Up to this many values MONAI's ``percentile`` calls ``torch.quantile`` (float32), above it numpy.
MONAI_TORCH_LIMIT = 1_000_000


def _torch_quantile_positions(n: int, q: Sequence[float]) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """``torch.quantile``'s float32 ranks for ``n`` values: (index below, index above, weight)."""
    q_t = torch.tensor([p / 100.0 for p in q], dtype=torch.float32)  # MONAI casts q/100 to the data's dtype
    ranks = q_t * (n - 1)
    below = ranks.to(torch.long)
    return below.numpy(), ranks.ceil().to(torch.long).numpy(), ranks - below


def percentiles(values: Array, q: Sequence[float], like_monai: bool = False) -> np.ndarray:
    """``np.percentile(values, q)`` (method ``linear``) over all elements, in linear time, as float64.

    Args:
        values: any numeric array or tensor (flattened); NaN must not occur.
        q: percentiles in [0, 100].
        like_monai: return the float32 bounds MONAI's ``percentile`` gives for the
            float32 cast of ``values``, bit for bit: ``torch.quantile``'s float32
            interpolation up to :data:`MONAI_TORCH_LIMIT` values, numpy's float64
            rounded to float32 above (what ``ScaleIntensityRangePercentiles`` used,
            so models trained with it see exactly the inputs they were trained on).

    Raises:
        ValueError: no values, or a percentile outside [0, 100].
    """
    flat = _flat(values)
    if isinstance(flat, torch.Tensor) and flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return _interpolate(int(flat.shape[0]), q, like_monai, lambda ks: _order_stats(flat, ks))


def _interpolate(
    n: int, q: Sequence[float], like_monai: bool, order_stats: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """:func:`percentiles` of ``n`` values from ``order_stats(ks)``: their ``ks``-th smallest (``…×len(ks)``).

    Leading axes of ``order_stats``' result (channels) are interpolated together.

    Raises:
        ValueError: no values, or a percentile outside [0, 100].
    """
    q = [float(p) for p in q]
    if any(not 0 <= p <= 100 for p in q):
        raise ValueError(f"percentiles must lie in [0, 100], got {q}")
    if n == 0:
        raise ValueError("percentiles of an empty array")
    m = len(q)
    if like_monai and n <= MONAI_TORCH_LIMIT:  # torch.quantile's float32 ranks, weights and lerp_ kernel
        below, above, weights = _torch_quantile_positions(n, q)
        stats = torch.from_numpy(order_stats(np.concatenate([below, above])).astype(np.float32))
        return stats[..., :m].lerp_(stats[..., m:], weights).numpy()
    prev, nxt, gamma = _positions(n, q)
    stats = order_stats(np.concatenate([prev, nxt]))
    if like_monai:  # numpy's float64 interpolation of the float32 values, rounded to float32
        stats = stats.astype(np.float32)
        return _lerp(stats[..., :m], stats[..., m:], gamma).astype(np.float32)
    return _lerp(stats[..., :m], stats[..., m:], gamma)


def channel_percentiles(
    chw: Array, q: Sequence[float], valid: np.ndarray | None = None, like_monai: bool = False
) -> np.ndarray:
    """Percentiles ``C×len(q)`` of each channel of a channel-first array or tensor (float64, or float32).

    Args:
        chw: ``C×…`` pixels (the statistics of each channel cover all its other axes).
        q: percentiles in [0, 100].
        valid: optional mask of the spatial shape; only these pixels count
            (none valid: the channel's statistics are those of a single 0).
        like_monai: see :func:`percentiles`.
    """
    histogrammed = chw.numpy() if isinstance(chw, torch.Tensor) and chw.device.type == "cpu" else chw
    if valid is None and isinstance(histogrammed, np.ndarray) and histogrammed.dtype in HISTOGRAM_DTYPES:
        return _channel_percentiles_histogram(histogrammed, q, like_monai)
    rows = []
    for c in chw:
        if valid is not None:
            c = c[valid] if valid.any() else np.zeros(1, np.float32)
        rows.append(percentiles(c, q, like_monai))
    return np.array(rows, np.float32 if like_monai else np.float64).reshape(len(rows), len(q))


def scale_range(
    x: Array, lower: Sequence[float], upper: Sequence[float], channels_last: bool = False
) -> Array:
    """Per channel ``(x - lower) / (upper - lower)`` clipped to [0, 1], float32, on ``x``'s device.

    The channel axis is ``-3`` (``C×H×W`` or ``B×C×H×W``). A channel with
    ``upper == lower`` is only shifted (``x - lower``, not clipped), as MONAI's
    ``ScaleIntensityRange`` does. The span ``upper - lower`` is taken in the
    bounds' own precision (float32 bounds: float32; else float64) and rounded
    to float32, as MONAI does with tensor and with Python-float bounds.

    Args:
        x: raw pixels, any numeric dtype.
        lower: the channels' lower bounds.
        upper: the channels' upper bounds.
        channels_last: write a tensor whose memory is channel-innermost
            (``…×H×W×C``, torch's ``channels_last`` for ``B×C×H×W``): the
            layout the CPU and CUDA networks take, so no layout copy follows.
            Numpy input gives a numpy view of that memory. Same numbers either way.

    Returns:
        A float32 numpy array for numpy input, else a float32 tensor on ``x``'s device.
    """
    kind = np.float32 if np.asarray(lower).dtype == np.float32 else np.float64
    lo = np.asarray(lower, kind).ravel()
    span = np.asarray(upper, kind).ravel() - lo
    flat = span == 0
    arr = None if isinstance(x, torch.Tensor) else np.asarray(x)
    # one float32 buffer, cast into, then computed in place: fresh temporaries cost more than the math
    if arr is not None and arr.dtype in TORCH_LACKS:  # numpy's cast: exact, not through float64
        cast = torch.from_numpy(arr.astype(np.float32))  # already that buffer, unless the layout differs
        out = _float_buffer(cast, True).copy_(cast) if channels_last else cast
    else:
        src = x if arr is None else pixels_tensor(arr)
        out = _float_buffer(src, channels_last).copy_(src)
    rows, per_channel = _channel_rows(out, channels_last)
    rows.sub_(per_channel(lo)).div_(per_channel(np.where(flat, 1.0, span)))
    if not flat.any():
        rows.clamp_(0.0, 1.0)
    else:
        rows.clamp_(per_channel(np.where(flat, -np.inf, 0.0)), per_channel(np.where(flat, np.inf, 1.0)))
    return out if isinstance(x, torch.Tensor) else out.numpy()


def _float_buffer(src: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """An uninitialised float32 tensor of ``src``'s shape and device; channel-innermost memory if asked."""
    if not channels_last or src.ndim < 3:
        return torch.empty(src.shape, dtype=torch.float32, device=src.device)
    order = (*range(src.ndim - 3), src.ndim - 2, src.ndim - 1, src.ndim - 3)  # …, H, W, C
    hwc = torch.empty([src.shape[d] for d in order], dtype=torch.float32, device=src.device)
    return hwc.movedim(-1, -3)


def _channel_rows(
    out: torch.Tensor, channels_last: bool
) -> tuple[torch.Tensor, Callable[[np.ndarray], torch.Tensor]]:
    """A view of ``out`` to compute on in place, and what turns per-channel values into its operand.

    Channel-innermost memory is viewed as rows of ``W×C`` values, and each
    per-channel vector is repeated ``W`` times to one such row: the operand
    then runs along the rows' contiguous axis. Broadcasting a ``C``-vector
    over the innermost axis of length ``C`` instead took twice as long.
    """
    device = out.device
    if channels_last and out.ndim >= 3:
        hwc = out.movedim(-3, -1)
        width = hwc.shape[-2]
        rows = hwc.reshape(*hwc.shape[:-2], -1)  # a view: hwc is contiguous
        return rows, lambda v: torch.as_tensor(np.tile(v, width), dtype=torch.float32, device=device)
    return out, lambda v: torch.as_tensor(np.reshape(v, (-1, 1, 1)), dtype=torch.float32, device=device)


def _channel_percentiles_histogram(chw: np.ndarray, q: Sequence[float], like_monai: bool) -> np.ndarray:
    """:func:`channel_percentiles` of small-range integer pixels: a histogram per channel, one interpolation.

    The same numbers as :func:`percentiles` channel by channel; for a 360×480
    RGB frame (an interleaved ``H×W×3`` image seen channel-first) 1.75 → 1.39 ms
    (alternating, torch 2.13, 2-core AMD EPYC): each channel is histogrammed
    from contiguous memory (:func:`_flat`: a copy of an interleaved channel;
    torch's bincount of a strided view took about twice as long), and the
    positions and the interpolation are computed once for all channels. The
    three bincounts are most of what remains.
    """
    n = int(np.prod(chw.shape[1:]))

    def order_stats(ks: np.ndarray) -> np.ndarray:
        stats = [_order_stats_histogram(_flat(c), ks) for c in chw]  # contiguous: a view or a copy
        return np.array(stats, np.float64).reshape(len(chw), len(ks))

    out = _interpolate(n, q, like_monai, order_stats)
    return out.astype(np.float32 if like_monai else np.float64).reshape(len(chw), len(q))
