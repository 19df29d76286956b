"""MONAI dictionary transforms shared by the tasks.

:class:`Normalized` applies the checkpoint's
:class:`~segnet_domains.adapters.Normalizer` inside a MONAI pipeline, so
training sees exactly the numbers inference will; :class:`ToSlice2Dd` turns a
``C×H×W×D`` crop with ``D = 2·context + 1`` into the 2.5D ``(C·D)×H×W`` input
and its centre-slice label.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from segnet_domains.adapters import Normalizer


class Normalized(MapTransform):
    """Normalise ``keys`` (channel-first arrays) with a checkpoint normalisation spec.

    Args:
        keys: the image keys.
        spec: ``{"mode": "percentile" | "zscore" | "scale" | "none", ...}``.
    """

    def __init__(self, keys: KeysCollection, spec: Mapping[str, Any], allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.normalize = Normalizer(spec)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if isinstance(value, torch.Tensor):  # normalised where it lies (a GPU transform stays there)
                out = self.normalize(value.detach().as_subclass(torch.Tensor)).contiguous()
            else:
                out = torch.from_numpy(np.ascontiguousarray(self.normalize(np.asarray(value))))
            if hasattr(value, "copy_meta_from"):  # keep MONAI MetaTensor metadata
                out = type(value)(out, meta=value.meta, applied_operations=value.applied_operations)
            d[key] = out
        return d


class ToSlice2Dd(MapTransform):
    """``C×H×W×D`` crop → 2.5D image ``(C·D)×H×W``; label/mask keys keep their centre slice.

    Args:
        image_keys: keys whose depth becomes channels (ordered: for each
            depth position, every channel — matching
            :class:`~segnet_domains.adapters.VolumeSliceAdapter` for one band).
        label_keys: keys reduced to their centre slice ``C×H×W``.
        axis: the spatial axis (0, 1, 2) that is the slice axis; the other two,
            in order, become H and W, as in the adapter's ``moveaxis``.
    """

    def __init__(self, image_keys: KeysCollection, label_keys: KeysCollection = (), axis: int = 2) -> None:
        super().__init__(image_keys, allow_missing_keys=True)
        self.label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)
        self.axis = axis % 3

    def _last(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(x).as_subclass(torch.Tensor).movedim(1 + self.axis, -1)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = self._last(d[key])
            c, h, w, depth = x.shape
            d[key] = x.permute(3, 0, 1, 2).reshape(depth * c, h, w).contiguous()
        for key in self.label_keys:
            if key in d:
                y = self._last(d[key])
                d[key] = y[..., y.shape[-1] // 2].contiguous()
        return d
