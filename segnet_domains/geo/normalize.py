"""Scene-wide normalisation for windowed reads.

A checkpoint's ``percentile`` (or statistics-free ``zscore``) normalisation
depends on the whole image. A scene read window by window must not
normalise each window on its own statistics — tiles would disagree at their
seams — so the statistics are computed once per scene from a decimated read
(valid pixels only, in linear time: :mod:`segnet_domains.percentiles`) and
every window is normalised with them, with the same scaling the
:class:`~segnet_domains.adapters.Normalizer` applies (on the window's device
when given a tensor).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from segnet_domains.adapters import Normalizer
from segnet_domains.percentiles import channel_percentiles, scale_range


class SceneNormalizer:
    """Normalise windows of one scene with statistics fixed for the whole scene.

    Args:
        spec: the checkpoint's ``normalization``.
        sample: ``C×h×w`` decimated read of the scene (:func:`~segnet_domains.geo.scene.read_sample`).
        valid: ``h×w`` validity of ``sample``; nodata does not enter the statistics.

    Attributes:
        stats: the fixed statistics (JSON-ready), e.g. ``{"lower": [...], "upper": [...]}``.
    """

    def __init__(self, spec: Mapping[str, Any] | None, sample: np.ndarray, valid: np.ndarray) -> None:
        spec = dict(spec or {"mode": "none"})
        base = Normalizer(spec)
        self.stats: dict[str, Any] = {}
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None

        def channels() -> Iterator[np.ndarray]:  # valid pixels, one channel at a time (bounded memory)
            for c in sample:
                yield (c[valid] if valid.any() else np.zeros(1)).astype(np.float64)

        if base.mode == "percentile":
            q = (float(spec.get("lower", 0.5)), float(spec.get("upper", 99.5)))
            lo, hi = channel_percentiles(sample, q, valid).T  # float64, as np.percentile gave them
            self.stats = {"lower": lo.tolist(), "upper": hi.tolist()}
            self._bounds = (lo, hi)
        elif not base.is_global:  # zscore on the image's own statistics
            mean, std = np.array([(c.mean(), c.std()) for c in channels()]).T
            self.stats = {"mean": mean.tolist(), "std": std.tolist()}
            base = Normalizer({**spec, **self.stats})
        self._base = base

    def __call__(self, chw: np.ndarray | torch.Tensor, channels_last: bool = False) -> Any:
        """``C×H×W`` (or ``B×C×H×W``) raw pixels → float32 network input (a tensor stays on its device).

        ``channels_last``: percentile scaling writes channel-innermost memory,
        the network's layout (:func:`~segnet_domains.percentiles.scale_range`);
        the other modes give channel-first values.
        """
        if self._bounds is not None:
            return scale_range(chw, *self._bounds, channels_last=channels_last)
        if isinstance(chw, torch.Tensor):
            return torch.stack([self._base(b) for b in chw]) if chw.ndim == 4 else self._base(chw)
        x = np.asarray(chw, np.float32)
        if x.ndim == 4:
            return np.stack([self._base(b) for b in x])
        return self._base(x)
