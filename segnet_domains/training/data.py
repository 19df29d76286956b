"""Dataset pieces the tasks share: a cache that names bad files, and label checks.

:class:`CheckedCacheDataset` is MONAI's :class:`~monai.data.CacheDataset`
whose deterministic pre-processing (load, orient, normalise) of an item that
fails becomes one :class:`~segnet_domains.errors.InputError` naming the file
— or, with ``skip_corrupt=True``, a warning and the item dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import CacheDataset
from monai.transforms import MapTransform

from segnet_domains.errors import InputError


def find_input_error(exc: BaseException) -> InputError | None:
    """The :class:`InputError` inside MONAI's ``RuntimeError("applying transform …")`` chain, if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, InputError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def as_input_error(exc: BaseException, source: str) -> InputError:
    """``exc`` as one clear line about ``source`` (the innermost cause is named)."""
    found = find_input_error(exc)
    if found is not None:
        return found
    root = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    text = str(root).strip().splitlines()
    detail = f"{type(root).__name__}: {text[0]}" if text else type(root).__name__
    return InputError(source, f"cannot be read ({detail})")


class CheckedCacheDataset(CacheDataset):
    """MONAI CacheDataset that reports (or skips) items whose pre-processing fails.

    Args:
        data: list of dicts (file paths or arrays).
        transform: a MONAI ``Compose``; the part before the first random
            transform is cached.
        source_key: the key whose value names the item in messages.
        skip_corrupt: warn and drop a failing item instead of raising.
        **kwargs: :class:`~monai.data.CacheDataset` arguments (``cache_rate``,
            ``num_workers`` …); ``progress`` defaults to False.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        transform: Callable[..., Any],
        source_key: str = "image",
        skip_corrupt: bool = False,
        **kwargs: Any,
    ) -> None:
        self.source_key = source_key
        self.skip_corrupt = skip_corrupt
        self.skipped: list[str] = []
        kwargs.setdefault("progress", False)
        super().__init__(list(data), transform, **kwargs)
        if self.skipped:
            keep = [i for i, c in enumerate(self._cache) if c is not None]
            cached = [self.data[i] for i in keep]
            self.data = cached + list(self.data[self.cache_num :])
            self._cache = [self._cache[i] for i in keep]
            self.cache_num = len(keep)

    def _source(self, idx: int) -> str:
        item = self.data[idx]
        value = item.get(self.source_key) if isinstance(item, Mapping) else None
        return str(value) if isinstance(value, str | bytes) or hasattr(value, "__fspath__") else f"item {idx}"

    def _load_cache_item(self, idx: int) -> Any:
        try:
            return super()._load_cache_item(idx)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one named error line
            err = as_input_error(exc, self._source(idx))
            if not self.skip_corrupt:
                raise err from None
            warnings.warn(f"{err} — skipped (data.skip_corrupt is true)", stacklevel=2)
            self.skipped.append(self._source(idx))
            return None


class CheckLabelsd(MapTransform):
    """Refuse label values outside ``0..num_classes-1`` (``ignore_index`` allowed), naming the file.

    Args:
        keys: label keys.
        num_classes: K.
        ignore_index: value allowed besides the classes.
    """

    def __init__(self, keys: KeysCollection, num_classes: int, ignore_index: int | None = None) -> None:
        super().__init__(keys)
        self.num_classes, self.ignore_index = num_classes, ignore_index

    def __call__(self, data: Mapping[Hashable, Any]) -> Mapping[Hashable, Any]:
        for key in self.key_iterator(dict(data)):
            value = data[key]
            meta = getattr(value, "meta", {}) or {}
            source = str(meta.get("filename_or_obj", key))
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr)):
                raise InputError(source, "mask has non-integer values (expected class indices)")
            check_labels(arr, self.num_classes, source, self.ignore_index)
        return data


def check_labels(label: np.ndarray, num_classes: int, source: str, ignore_index: int | None = None) -> None:
    """Refuse label values outside ``0..num_classes-1`` (``ignore_index`` allowed).

    Raises:
        InputError: names the file and the unexpected values.
    """
    values = np.unique(label)
    bad = values[(values < 0) | (values >= num_classes)]
    if ignore_index is not None:
        bad = bad[bad != ignore_index]
    if bad.size:
        shown = ", ".join(f"{v:g}" for v in bad[:8].tolist())
        raise InputError(source, f"mask has values {shown} outside the declared classes 0..{num_classes - 1}")
