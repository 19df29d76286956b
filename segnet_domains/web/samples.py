"""One-click samples for the page, made by the demo's generators (nothing is downloaded).

Each sample (:mod:`segnet_domains.synthetic`) is the kind of file the matching
``make demo`` model was trained on (held-out seeds, as the demo segments): an
ATLAS-style T1w volume with a stroke lesion on the 2 mm MNI grid, a RITE-style
fundus photograph (TIFF), and a Landsat-like 4-band uint16 GeoTIFF in UTM. They are written on first
request into the server's temporary folder.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segnet_domains.synthetic.layouts import atlas_t1w, landsat_pairs, rite_fundus


@dataclass(frozen=True)
class Sample:
    """A built-in sample: its name, what it shows, its kind and how to write it into a folder."""

    name: str
    title: str
    kind: str
    write: Callable[[Path], Path]


def _mri(root: Path) -> Path:
    return atlas_t1w(root, subjects=1, seed=99, voxel_mm=2.0)[0][0]


def _fundus(root: Path) -> Path:
    return rite_fundus(root, train=0, test=1, seed=77)["test"][0]


def _aerial(root: Path) -> Path:
    return landsat_pairs(root, scenes=1, size=(512, 512), seed=55)[0][0]


SAMPLES = (
    Sample("mri", "MRI: T1w brain with a stroke lesion (NIfTI, 2 mm MNI grid)", "volume", _mri),
    Sample("fundus", "Fundus photograph, 565×584 RGB (RITE-style TIFF)", "image", _fundus),
    Sample("aerial", "Landsat-like scene, 4 bands uint16 (GeoTIFF, UTM 30 m)", "scene", _aerial),
)


class SampleStore:
    """Writes each sample once, on first request, under ``root`` (the server's temporary folder)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._paths: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._samples = {s.name: s for s in SAMPLES}

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": s.name, "title": s.title, "kind": s.kind} for s in SAMPLES]

    def path(self, name: str) -> Path:
        """The sample's file, written now if it is not yet.

        Raises:
            KeyError: no such sample.
        """
        sample = self._samples[name]
        with self._lock:
            if name not in self._paths:
                self._paths[name] = sample.write(self.root / name)
            return self._paths[name]
