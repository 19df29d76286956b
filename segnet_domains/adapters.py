"""Adapters between user arrays and network tensors.

* :class:`ImageAdapter` — any 2D image (``H×W``, ``H×W×C`` or ``C×H×W``, any
  numeric dtype) → normalised ``1×C×H'×W'`` float tensor padded to a multiple
  of the network's total stride; :func:`crop` undoes the padding.
* :class:`VolumeSliceAdapter` — a 3D volume → batches of 2D slices along any
  axis, optionally with ``context`` neighbours on each side stacked as extra
  channels (2.5D), and the slice results back into the volume's own shape and
  axis order.

Normalisation follows the checkpoint's ``normalization`` spec; the training
pipelines apply the same :class:`Normalizer` (``training.transforms.Normalized``),
so a model sees the same numbers at training and at inference.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import NormalizeIntensity

from segnet_domains.devices import pixels_tensor, to_device
from segnet_domains.errors import InputError
from segnet_domains.percentiles import channel_percentiles, scale_range

#: Smallest image edge we accept; a 1-pixel image carries nothing to segment.
MIN_SIDE = 2


def check_pixels(array: np.ndarray, source: str, valid: np.ndarray | None = None) -> None:
    """Refuse empty, non-numeric and non-finite input with one clear message.

    Args:
        array: the raw pixels.
        source: file name (or description) used in the message.
        valid: optional mask of pixels that matter (nodata excluded).

    Raises:
        InputError: empty, non-numeric, or NaN/Inf among the valid pixels.
    """
    if array.size == 0:
        raise InputError(source, f"empty image (shape {array.shape})")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(source, f"pixels are {array.dtype}, not numbers")
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if valid is not None:
            finite |= ~np.broadcast_to(valid, array.shape)
        if not finite.all():
            n = int((~finite).sum())
            raise InputError(source, f"contains {n} NaN/Inf value(s)")


def to_channel_first(image: np.ndarray, channels: int, source: str = "image") -> np.ndarray:
    """Return ``image`` as ``C×H×W`` whatever its layout.

    ``H×W`` is one channel. For 3D input the axis whose length equals
    ``channels`` is the channel axis (the last one wins a tie, as in
    ``H×W×C`` images from PNG/TIFF readers).

    Raises:
        InputError: wrong dimensionality, a channel count that differs from
            ``channels`` (both counts named), or an image smaller than 2×2.
    """
    image = np.asarray(image)
    check_pixels(image, source)
    if image.ndim == 2:
        chw = image[None]
    elif image.ndim == 3:
        if image.shape[-1] == channels:
            chw = np.moveaxis(image, -1, 0)
        elif image.shape[0] == channels:
            chw = image
        else:
            found = image.shape[-1] if image.shape[-1] <= image.shape[0] else image.shape[0]
            raise InputError(
                source,
                f"image has {found} channels but the checkpoint expects {channels} (shape {image.shape})",
            )
    else:
        raise InputError(source, f"expected a 2D image (H×W, H×W×C or C×H×W), got shape {image.shape}")
    if chw.shape[0] != channels:
        raise InputError(source, f"image has {chw.shape[0]} channel(s) but the checkpoint expects {channels}")
    if min(chw.shape[1:]) < MIN_SIDE:
        raise InputError(
            source, f"image is {chw.shape[1]}×{chw.shape[2]} pixels; need at least {MIN_SIDE}×{MIN_SIDE}"
        )
    return chw


class Normalizer:
    """Channel-first array → float32 network input, as a checkpoint's ``normalization`` says.

    Modes (``spec["mode"]``):

    * ``"percentile"`` — per channel, ``lower``/``upper`` percentiles → [0, 1],
      clipped; statistics of the whole array given (the whole volume for
      volumes, not each slice), computed once per call in linear time
      (:mod:`segnet_domains.percentiles`: the numbers of MONAI's
      ``ScaleIntensityRangePercentiles`` / ``np.percentile``, without their sorts).
    * ``"zscore"`` — per channel ``(x - mean) / std`` with the checkpoint's
      ``mean``/``std`` lists, or the array's own statistics if absent
      (MONAI ``NormalizeIntensity``).
    * ``"scale"`` — ``x / scale`` (e.g. 255 for 8-bit, 10000 for reflectance).
    * ``"none"`` — cast only.

    A numpy array gives a numpy array; a torch tensor gives a float32 tensor on
    its own device (normalise where the model runs).
    """

    def __init__(self, spec: Mapping[str, Any] | None) -> None:
        self.spec = dict(spec or {"mode": "none"})
        mode = self.spec.get("mode", "none")
        if mode not in ("percentile", "zscore", "scale", "none"):
            raise ValueError(f"unknown normalization mode {mode!r}")
        self.mode = mode

    @property
    def is_global(self) -> bool:
        """True if the result of a pixel does not depend on the rest of the array."""
        return self.mode in ("scale", "none") or (
            self.mode == "zscore" and "mean" in self.spec and "std" in self.spec
        )

    def percentile_bounds(
        self, chw: np.ndarray | torch.Tensor, valid: np.ndarray | None = None
    ) -> np.ndarray:
        """``C×2`` (lower, upper) float32 percentiles of each channel (``percentile`` mode's statistics).

        Bit for bit MONAI ``ScaleIntensityRangePercentiles``' bounds (``like_monai``), found in linear time.
        """
        q = (float(self.spec.get("lower", 0.5)), float(self.spec.get("upper", 99.5)))
        return channel_percentiles(chw, q, valid, like_monai=True)

    def percentile_scaling(
        self, stats: np.ndarray | torch.Tensor, channels_last: bool = False
    ) -> Callable[[Any], Any]:
        """``percentile`` mode's scaling with ``stats``' bounds, for ``stats`` or any array that shares them.

        The bounds are :meth:`percentile_bounds` of ``stats`` (taken on the
        host); the returned function applies them to raw pixels of the same
        channels with :func:`~segnet_domains.percentiles.scale_range` (on the
        pixels' device, channel-innermost memory if ``channels_last``): a
        volume's slices scaled with the whole volume's statistics, or pixels
        moved to the model's device after their statistics were taken.
        """
        lo, hi = self.percentile_bounds(stats).T
        return functools.partial(scale_range, lower=lo, upper=hi, channels_last=channels_last)

    def __call__(self, chw: np.ndarray | torch.Tensor) -> Any:
        """``C×…`` raw pixels → float32 network input (numpy in, numpy out; a tensor stays on its device)."""
        if not isinstance(chw, torch.Tensor):
            chw = np.asarray(chw)
        if self.mode == "percentile":
            return self.percentile_scaling(chw)(chw)
        if isinstance(chw, torch.Tensor):
            return self._tensor(chw)
        x = np.asarray(chw, dtype=np.float32)
        if self.mode == "zscore":
            mean, std = self.spec.get("mean"), self.spec.get("std")
            if mean is not None and std is not None:
                shape = (-1,) + (1,) * (x.ndim - 1)
                m = np.asarray(mean, np.float32).reshape(shape)
                s = np.asarray(std, np.float32).reshape(shape)
                return (x - m) / np.where(s == 0, 1.0, s)
            return np.asarray(NormalizeIntensity(channel_wise=True)(x), dtype=np.float32)
        if self.mode == "scale":
            return x / np.float32(self.spec.get("scale", 1.0))
        return x

    def _tensor(self, chw: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__`'s numbers for a tensor, on its device (every mode but ``percentile``)."""
        x = chw.float()
        if self.mode == "zscore":
            mean, std = self.spec.get("mean"), self.spec.get("std")
            if mean is not None and std is not None:
                shape = (-1,) + (1,) * (x.ndim - 1)
                m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(shape)
                s = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(shape)
                return (x - m) / torch.where(s == 0, torch.ones_like(s), s)
            out = NormalizeIntensity(channel_wise=True)(x)
            return torch.as_tensor(out).as_subclass(torch.Tensor).float()
        if self.mode == "scale":
            return x / float(self.spec.get("scale", 1.0))
        return x


def pad_to_multiple(
    x: torch.Tensor, multiple: int, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``N×C×H×W`` at the bottom/right to multiples of ``multiple`` (reflect, or replicate when tiny).

    A channels-last input stays channels-last (:func:`_reflect_pad_channels_last`):
    ``F.pad`` would return it channel-first, and the network would copy it back.

    Args:
        x: the batch.
        multiple: the network's total stride.
        dtype: the result's dtype (default ``x``'s): the network's input
            dtype, so that the cast happens in the padding's own pass over
            the input instead of a pass of its own (``x`` itself, cast, when
            nothing needs padding).

    Returns:
        The padded tensor and the original ``(H, W)`` for :func:`crop`.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    dtype = x.dtype if dtype is None else dtype
    if ph == 0 and pw == 0:
        return x.to(dtype), (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    channels_last = x.ndim == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last)
    if mode == "reflect" and channels_last:
        return _reflect_pad_channels_last(x, ph, pw, dtype), (h, w)
    return F.pad(x, (0, pw, 0, ph), mode=mode).to(dtype), (h, w)


def _reflect_pad_channels_last(x: torch.Tensor, ph: int, pw: int, dtype: torch.dtype) -> torch.Tensor:
    """``F.pad(x, (0, pw, 0, ph), mode="reflect").to(dtype)``'s values in a new channels-last tensor.

    Written by hand (the interior, then the reflected columns, then the
    reflected rows, corners included): the same numbers as ``F.pad``, which
    has no channels-last output. For a 360×480 RGB frame padded to 368 rows,
    normalising into channels-last memory and padding there took 2.1 against
    4.0 ms for the channel-first route and its layout copy (torch 2.13, 2-core
    AMD EPYC). Casting on the way (to the network's bf16) saved the
    network's own cast: ``predict_proba`` of that frame 0.977–0.984× of
    padding first, then casting (SegNet 8…64, 2-core AMD EPYC Zen 4).
    """
    n, c, h, w = x.shape
    out = torch.empty((n, c, h + ph, w + pw), dtype=dtype, device=x.device, memory_format=torch.channels_last)
    out[..., :h, :w] = x
    if pw:
        out[..., :h, w:] = x[..., w - 1 - pw : w - 1].flip(-1)
    if ph:
        out[..., h:, :] = out[..., h - 1 - ph : h - 1, :].flip(-2)
    return out


def crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    return x[..., : size[0], : size[1]]


class ImageAdapter:
    """2D image → normalised channel-first float32 array of the checkpoint's channel count.

    Args:
        channels: input channels the network expects.
        normalization: the checkpoint's normalisation spec.
    """

    def __init__(self, channels: int, normalization: Mapping[str, Any] | None) -> None:
        self.channels = channels
        self.normalize = Normalizer(normalization)

    def __call__(self, image: np.ndarray, source: str = "image") -> np.ndarray:
        """Return ``C×H×W`` float32, ready to batch."""
        return self.normalize(to_channel_first(image, self.channels, source))

    def tensor(
        self,
        image: np.ndarray,
        source: str = "image",
        device: str | torch.device = "cpu",
        channels_last: bool = False,
    ) -> torch.Tensor:
        """:meth:`__call__`'s numbers as a ``C×H×W`` float32 tensor, normalised on ``device``.

        The raw pixels cross to the device (a quarter of the floats' bytes for
        8-bit images) and are scaled there. Statistics are taken on the host
        (percentiles by the linear-time histogram, faster than a selection on a
        GPU; ``zscore`` without the checkpoint's mean/std as in :meth:`__call__`).
        With ``channels_last``, ``percentile`` scaling writes channel-innermost
        memory (:func:`~segnet_domains.percentiles.scale_range`), the network's layout.
        """
        device = torch.device(device)
        chw = to_channel_first(image, self.channels, source)
        norm = self.normalize
        if norm.mode == "percentile":
            return norm.percentile_scaling(chw, channels_last)(to_device(pixels_tensor(chw), device))
        if norm.is_global:
            return norm(to_device(pixels_tensor(chw), device))
        return to_device(torch.from_numpy(norm(chw)), device)


#: Normalises a stack of a volume's slices with the whole volume's statistics
#: (:meth:`VolumeSliceAdapter.raw_slices`).
SliceNormalizer = Callable[[np.ndarray], np.ndarray]


def _as_float32(stack: np.ndarray) -> np.ndarray:
    return np.asarray(stack, np.float32)


class VolumeSliceAdapter:
    """Run a 2D network over a 3D volume slice by slice along ``axis``.

    With ``context=k`` each slice is stacked with its ``k`` neighbours on each
    side (edge slices repeat the border slice), giving ``2k+1`` channels:
    the 2.5D input of the checkpoint. Normalisation statistics are those of
    the whole volume.

    Args:
        axis: the slicing axis of the input volume (negative allowed).
        context: neighbours on each side.
        normalization: the checkpoint's normalisation spec.
    """

    def __init__(self, axis: int, context: int, normalization: Mapping[str, Any] | None) -> None:
        self.axis = axis
        self.context = context
        self.normalize = Normalizer(normalization)

    def prepare(self, volume: np.ndarray, source: str = "volume") -> np.ndarray:
        """Validate and normalise; return ``S×H×W`` float32 with the slice axis first."""
        slices, normalize = self.raw_slices(volume, source)
        return normalize(slices)

    def raw_slices(self, volume: np.ndarray, source: str = "volume") -> tuple[np.ndarray, SliceNormalizer]:
        """Validate; ``(S×H×W slices, their normalisation)``: the slice axis first, pixels as stored.

        The normalisation's statistics are the whole volume's, computed here
        once; the function applies them to any stack of its slices, so
        :meth:`batches` normalises each batch as it gathers it: no normalised
        copy of the whole volume is made first (for 197×233×189 float32, 78 →
        34 ms before the first batch, the percentiles alone; the batches'
        share runs in :meth:`Segmenter.iter_volume`'s gathering thread). The
        numbers are :meth:`prepare`'s: the same per-voxel scaling. A z-score
        on the volume's own statistics (MONAI ``NormalizeIntensity``) is
        applied here to the whole volume, and the function only passes the
        normalised slices on.

        Raises:
            InputError: not a 3D volume (a singleton 4th axis is dropped), empty,
                non-numeric or non-finite voxels (:func:`check_pixels`), an axis out of
                range, or slices below the network's minimum side.
        """
        volume = np.asarray(volume)
        if volume.ndim == 4 and 1 in (volume.shape[0], volume.shape[-1]):
            volume = volume.squeeze(0 if volume.shape[0] == 1 else -1)
        if volume.ndim != 3:
            raise InputError(source, f"expected a 3D volume, got {volume.ndim}D with shape {volume.shape}")
        check_pixels(volume, source)
        if not -3 <= self.axis < 3:
            raise InputError(source, f"axis {self.axis} is out of range for a 3D volume")
        moved = np.moveaxis(volume, self.axis, 0)
        if min(moved.shape[1:]) < MIN_SIDE:
            raise InputError(
                source, f"slices are {moved.shape[1]}×{moved.shape[2]}; need at least {MIN_SIDE}×{MIN_SIDE}"
            )
        norm = self.normalize
        if norm.mode == "percentile":
            return moved, norm.percentile_scaling(moved[None])  # the one channel's, over the whole volume
        if norm.is_global:
            return moved, lambda stack: norm(stack[None])[0]
        return norm(moved[None])[0], _as_float32

    def batches(
        self, slices: np.ndarray, batch_size: int, normalize: SliceNormalizer | None = None
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(slice range, B×(2k+1)×H×W)`` batches of :meth:`prepare`'s output.

        Or of :meth:`raw_slices`' slices, each batch passed through its ``normalize``.
        """
        n, k = slices.shape[0], self.context
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            idx = np.arange(start, stop)[:, None] + np.arange(-k, k + 1)[None, :]
            stack = slices[np.clip(idx, 0, n - 1)]
            yield slice(start, stop), stack if normalize is None else normalize(stack)

    def restore(self, per_slice: np.ndarray) -> np.ndarray:
        """Move the slice axis of ``S×H×W`` (or ``S×K×H×W`` → ``K×…``) results back."""
        if per_slice.ndim == 4:
            return np.moveaxis(np.moveaxis(per_slice, 1, 0), 1, self.axis % 3 + 1)
        return np.moveaxis(per_slice, 0, self.axis)
