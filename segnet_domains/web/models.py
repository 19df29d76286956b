"""The checkpoints a server offers: one loaded :class:`Segmenter` per checkpoint, shared by all requests.

Thread safety: each :class:`ServedModel` has one lock, held for the whole
job (read, infer, write). Requests to the same model run one after the
other; requests to different models run in parallel. A lock per model
rather than a segmenter per thread because Monte Carlo dropout switches
the shared network's dropout layers on and off for the duration of a pass,
and because on a CPU two passes of one model in parallel only share the
same cores.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segnet_domains.checkpoint import DOMAINS
from segnet_domains.errors import InputError
from segnet_domains.inference import Segmenter

#: The model domain that suits each kind of upload when the request names none.
DOMAIN_FOR_KIND = {"volume": "mri", "image": "fundus", "scene": "aerial"}


def demo_checkpoints(demo_dir: str | Path = "demo_out") -> list[Path]:
    """The checkpoints ``make demo`` trains that exist: ``DEMO_DIR/models/<domain>/best.pt``."""
    root = Path(demo_dir) / "models"
    return [p for d in DOMAINS if (p := root / d / "best.pt").is_file()]


def model_name(path: str | Path) -> str:
    """A short name for a checkpoint: its stem, or its folder's name for ``best.pt`` / ``last.pt``."""
    path = Path(path)
    stem = path.name.split(".")[0]
    return path.parent.name if stem in ("best", "last") and path.parent.name else stem


@dataclass
class ServedModel:
    """A checkpoint being served.

    Attributes:
        name: the name requests use (``model=`` form field).
        path: the checkpoint file.
        segmenter: the loaded model, shared by every request.
        lock: held by a request while it uses ``segmenter``.
    """

    name: str
    path: Path
    segmenter: Segmenter
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def describe(self) -> dict[str, Any]:
        """What ``GET /api/models`` lists: name, domain, bands, classes and colours, dropout."""
        info = self.segmenter.info
        return {
            "name": self.name,
            "file": self.path.name,
            "architecture": info.architecture,
            "features": info.args.get("features"),
            "domain": info.domain,
            "bands": info.bands,
            "band_names": info.band_names,
            "in_channels": info.in_channels,
            "context": info.context,
            "slice_axis": info.slice_axis,
            "tile_size": info.tile_size,
            "normalization": info.normalization.get("mode"),
            "classes": [
                {"index": i, "name": n, "color": c}
                for i, (n, c) in enumerate(zip(info.class_names, info.class_colors))
            ],
            "dropout": self.segmenter.has_dropout,
        }


class ModelRegistry:
    """The served models, by name, in the order given."""

    def __init__(self, models: Iterable[ServedModel]) -> None:
        self.models: dict[str, ServedModel] = {}
        for m in models:
            if m.name in self.models:
                raise ValueError(f"two models named {m.name!r}")
            self.models[m.name] = m
        if not self.models:
            raise ValueError("no models to serve")

    @classmethod
    def from_checkpoints(
        cls,
        paths: Sequence[str | Path],
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 8,
        compile: bool = False,
    ) -> ModelRegistry:
        """Load every checkpoint once (a bad one fails here, before the server starts).

        Names come from :func:`model_name`; a clash gets ``-2``, ``-3`` … appended.

        Raises:
            InputError: a missing, corrupt or unsafe checkpoint; an unknown device;
                ``compile`` with an ONNX model.
        """
        models: list[ServedModel] = []
        taken: set[str] = set()
        for p in paths:
            seg = Segmenter.from_checkpoint(
                p, device=device, precision=precision, batch_size=batch_size, compile=compile
            )
            base = name = model_name(p)
            n = 1
            while name in taken:
                n += 1
                name = f"{base}-{n}"
            taken.add(name)
            models.append(ServedModel(name, Path(p), seg))
        return cls(models)

    def describe(self) -> list[dict[str, Any]]:
        return [m.describe() for m in self.models.values()]

    def pick(self, name: str | None, kind: str) -> ServedModel:
        """The model called ``name``; without a name, the first whose domain suits ``kind``, else the first.

        Raises:
            InputError: no model of that name.
        """
        if name:
            if name not in self.models:
                raise InputError(None, f"no model named {name!r}; served: {', '.join(self.models)}")
            return self.models[name]
        domain = DOMAIN_FOR_KIND.get(kind)
        for m in self.models.values():
            if m.segmenter.info.domain == domain:
                return m
        return next(iter(self.models.values()))
