"""The task interface and registry: what a dataset family gives the shared training engine.

See :mod:`segnet_domains.training` for the contract and an example.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from segnet_domains.errors import InputError
from segnet_domains.inference import Segmenter
from segnet_domains.training.data import CheckedCacheDataset

#: Task name → ``"module:attribute"``; imported only when a config asks for it.
TASKS: dict[str, str] = {
    "atlas_lesion": "segnet_domains.medical.atlas:AtlasLesionTask",
    "rite_vessels": "segnet_domains.medical.rite:RiteVesselTask",
    "rite_av": "segnet_domains.medical.rite:RiteArteryVeinTask",
    "aerial": "segnet_domains.geo.aerial_task:AerialTask",
    "ucf_qnrf": "segnet_domains.counting.task:UcfQnrfTask",
    "camvid": "segnet_domains.datasets.camvid:CamVidTask",
    "sunrgbd": "segnet_domains.datasets.sunrgbd:SunRgbdTask",
    "mfn": "segnet_domains.datasets.mfn:MfnTask",
    "ade20k": "segnet_domains.datasets.ade20k:Ade20kTask",
    "skyscapes_dense": "segnet_domains.datasets.skyscapes:SkyScapesDenseTask",
    "tlcgis": "segnet_domains.datasets.tlcgis:TlcgisTask",
    "atlas_r12": "segnet_domains.medical.atlas_r12:AtlasR12Task",
}


@dataclass
class Case:
    """One whole validation image or volume.

    Attributes:
        name: identifier shown in the metrics (file stem, subject id).
        image: raw pixels as the task's reader returns them: ``H×W``,
            ``H×W×C`` or ``C×H×W`` for 2D; ``I×J×K`` for a volume (RAS).
        label: true class per pixel (ints ``0..K-1``), same spatial shape;
            ``None`` for an inference-only case (not scored).
        mask: ``True`` where pixels count (field of view, valid data);
            ``None`` = everywhere.
        volume: ``True`` → slice-wise volume inference along the task's
            ``slice_axis``.
    """

    name: str
    image: np.ndarray
    label: np.ndarray | None
    mask: np.ndarray | None = None
    volume: bool = False


class Task:
    """Base class of a training task (a dataset family plus its label semantics).

    Subclasses set the class attributes and implement :meth:`metadata`,
    :meth:`train_dataset` and :meth:`val_cases`; the rest has defaults.

    Attributes:
        name: the config's ``task:`` value.
        data_defaults: the task's ``data.*`` keys and their defaults (every
            key a config may set under ``data``; ``root`` is always there).
        include_background: average metrics over all classes (aerial land
            cover) instead of the foreground classes (lesion, vessel).
        best_metric: key of the validation summary's ``mean`` (``"dice"``,
            ``"jaccard"`` …) or ``"miou"`` that picks ``best.pt``.
        best_mode: ``"max"`` (higher ``best_metric`` is better) or ``"min"``
            (an error such as a counting MAE).
        ignore_index: label value the loss and metrics ignore (or ``None``).

    Args:
        config: the whole merged config (``config["data"]`` is the task's part).
    """

    name: ClassVar[str] = ""
    data_defaults: ClassVar[dict[str, Any]] = {}
    include_background: ClassVar[bool] = False
    best_metric: ClassVar[str] = "dice"
    best_mode: ClassVar[str] = "max"
    ignore_index: ClassVar[int | None] = None

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.data = config["data"]

    # ------------------------------------------------------------------ required

    def metadata(self) -> dict[str, Any]:
        """Checkpoint metadata: ``in_channels``, ``out_channels``, ``class_names``, ``normalization``,
        ``domain`` and, where they apply, ``band_names``, ``class_colors``, ``context``,
        ``slice_axis``, ``tile_size``, ``tile_overlap``.

        ``in_channels``/``out_channels`` build the model; the rest goes to
        :func:`~segnet_domains.checkpoint.save_checkpoint`.
        """
        raise NotImplementedError

    def train_dataset(self) -> Dataset:
        """A (MONAI) dataset of training samples.

        Each item is a dict (or a list of dicts, as MONAI's multi-sample crops
        return) with ``"image"``: ``C×H×W`` float32 normalised with
        :class:`~segnet_domains.adapters.Normalizer` (the checkpoint's spec),
        ``"label"``: ``1×H×W`` class indices, and optionally ``"mask"``:
        ``1×H×W`` with 1 where the pixel counts. All items share H and W
        within a batch. If it has MONAI random transforms, ``dataset.transform``
        is re-seeded every epoch (deterministic runs, exact resume).
        """
        raise NotImplementedError

    def cached_dataset(
        self, items: list[dict[str, Any]], transforms: list[Any], source_key: str = "image"
    ) -> CheckedCacheDataset:
        """The usual :meth:`train_dataset`: MONAI ``CacheDataset`` over ``items`` through ``transforms``.

        Honours ``data.cache_rate`` and ``data.skip_corrupt``; an item whose
        pre-processing fails is named by ``item[source_key]``.
        """
        from monai.transforms import Compose

        return CheckedCacheDataset(
            items,
            Compose(transforms),
            source_key=source_key,
            skip_corrupt=bool(self.data["skip_corrupt"]),
            cache_rate=float(self.data.get("cache_rate", 1.0)),
        )

    def val_cases(self) -> Iterable[Case]:
        """Whole validation images/volumes (read lazily, one at a time is fine)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ optional

    def train_labels(self) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """``(label, mask)`` of every training image, for median-frequency class weights.

        Needed only when ``train.class_weights: median_frequency``.
        """
        raise NotImplementedError(f"task {self.name!r} does not provide train_labels()")

    def loss(self, num_classes: int, weights: np.ndarray | None) -> nn.Module | None:
        """The training loss ``loss(output, label, mask)``; ``None`` (default): the engine's
        :class:`~segnet_domains.training.loss.SegmentationLoss` (Dice + CE). A regression task
        (a density head) returns its own, e.g. an MSE."""
        return None

    def evaluate(self, segmenter: Segmenter) -> dict[str, Any] | None:
        """Score the validation data your own way; ``None`` (default): the engine scores
        :meth:`val_cases` as segmentations (Dice, Jaccard …).

        A custom report has the keys the engine logs: ``"mean"`` (metric →
        value, holding ``best_metric``), ``"pooled"``, ``"miou"``,
        ``"per_class_mean"``, ``"n_cases"``, ``"cases"`` (one dict per case)
        and ``"inference_only"``, JSON-ready (``None`` for undefined values).
        """
        return None

    def predict(self, segmenter: Segmenter, case: Case) -> np.ndarray:
        """Labels for a validation case through the shared inference path."""
        if case.volume:
            return segmenter.predict_volume(case.image, source=case.name)
        return segmenter.predict(case.image, source=case.name)


def get_task(name: str | None, source: str = "config") -> type[Task]:
    """The task class registered as ``name`` (imported on first use).

    Raises:
        InputError: no task given, an unknown name, or a module that cannot be imported.
    """
    if not name:
        raise InputError(source, f"no 'task' set (one of: {', '.join(sorted(TASKS))})")
    target = TASKS.get(str(name))
    if target is None:
        raise InputError(source, f"unknown task {name!r} (one of: {', '.join(sorted(TASKS))})")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(source, f"task {name!r} is not available ({exc})") from None
    return getattr(module, attr)


def register_task(name: str, target: str | type[Task]) -> None:
    """Register a task: a class, or a lazy ``"module:attribute"`` string."""
    if isinstance(target, type):
        TASKS[name] = f"{target.__module__}:{target.__qualname__}"
    else:
        TASKS[name] = target
