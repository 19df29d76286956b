"""Scene-wide normalisation for windowed reads.

A checkpoint's ``percentile`` (or statistics-free ``zscore``) normalisation
depends on the whole image. A scene read window by window must not
normalise each window on its own statistics — tiles would disagree at their
seams — so the statistics are computed once per scene from a decimated read
(valid pixels only) and every window is normalised with them, through the
same MONAI transforms the :class:`~segnet_domains.adapters.Normalizer` uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from monai.transforms import ScaleIntensityRange

from segnet_domains.adapters import Normalizer


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
        self._ranges: list[ScaleIntensityRange] | None = None

        def channels() -> Iterator[np.ndarray]:  # valid pixels, one channel at a time (bounded memory)
            for c in sample:
                yield (c[valid] if valid.any() else np.zeros(1)).astype(np.float64)

        if base.mode == "percentile":
            q = [float(spec.get("lower", 0.5)), float(spec.get("upper", 99.5))]
            lo, hi = np.array([np.percentile(c, q) for c in channels()]).T
            self.stats = {"lower": lo.tolist(), "upper": hi.tolist()}
            self._ranges = [
                ScaleIntensityRange(a_min=float(a), a_max=float(b), b_min=0.0, b_max=1.0, clip=True)
                for a, b in zip(lo, hi)
            ]
        elif not base.is_global:  # zscore on the image's own statistics
            mean, std = np.array([(c.mean(), c.std()) for c in channels()]).T
            self.stats = {"mean": mean.tolist(), "std": std.tolist()}
            base = Normalizer({**spec, **self.stats})
        self._base = base

    def __call__(self, chw: np.ndarray) -> np.ndarray:
        """``C×H×W`` (or ``B×C×H×W``) raw pixels → float32 network input."""
        if self._ranges is None:
            x = np.asarray(chw, np.float32)
            if x.ndim == 4:
                return np.stack([self._base(b) for b in x])
            return self._base(x)
        x = np.asarray(chw, np.float32)
        out = np.empty_like(x)
        for c, t in enumerate(self._ranges):
            out[..., c, :, :] = np.asarray(t(x[..., c, :, :]), np.float32)
        return out
