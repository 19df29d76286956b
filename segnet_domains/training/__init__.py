"""The one MONAI training engine shared by every pipeline (ATLAS, RITE, aerial).

A config's ``task:`` key names a registered :class:`Task`; the task supplies
the data and its meaning, the engine does everything else: the model from
``model.*``, MONAI's Dice+CE loss (median-frequency class weights, ignored
pixels), SGD (lr 0.001, momentum 0.9, as in SegNet) or Adam, seeded epochs
with a tqdm bar, validation on whole images/volumes through the shared
:class:`~segnet_domains.inference.Segmenter`, ``OUT/metrics.jsonl``,
``OUT/best.pt`` and ``OUT/last.pt`` (with optimizer, epoch and RNG state for
``--resume``), and DistributedDataParallel under ``torchrun`` (gloo on CPU).

Running::

    from segnet_domains.training import build_config, train
    cfg = build_config("pipelines/configs/rite_vessels.yaml",
                       overrides=["train.epochs=1", "model.features=[8,16,32,64,64]"],
                       data_root="/data/RITE", out="runs/rite")
    result = train(cfg, resume=False)      # result.best, result.last, result.history

or ``segnet-domains train CONFIG [--data-root DIR] [--out DIR] [--resume] [--set k=v ...]``.

The package by job: :mod:`~segnet_domains.training.config` (the typed run
config, checked once), :mod:`~segnet_domains.training.state` (seeding, RNG,
resume, checkpoints, the metrics log), :mod:`~segnet_domains.training.engine`
(the loop), :mod:`~segnet_domains.training.factories` (model, loss,
optimizer from the config), :mod:`~segnet_domains.training.validation`, and
the task side: :mod:`~segnet_domains.training.task` (the contract and
registry), :mod:`~segnet_domains.training.data`,
:mod:`~segnet_domains.training.transforms`, :mod:`~segnet_domains.training.loss`.

The task contract
-----------------
A task is a subclass of :class:`Task` registered by name in :data:`TASKS`
(``name → "module:attribute"``, imported lazily, so a config can name a task
whose module is only imported when used; ``aerial`` is pre-registered as
``segnet_domains.geo.aerial_task:AerialTask``). It is constructed with the
whole merged config (``self.config``; ``self.data`` is ``config["data"]``)
and provides:

Class attributes
    ``name``; ``data_defaults`` — every ``data.*`` key the task accepts with
    its default (``root`` and ``skip_corrupt`` always exist; unknown keys in a
    config or ``--set`` are errors); ``include_background`` (metrics over all
    classes, e.g. land cover) ; ``best_metric`` (``"dice"``, ``"jaccard"``,
    ``"precision"``, ``"recall"`` of the mean over cases, or ``"miou"``);
    ``ignore_index`` (label value excluded from loss and metrics, or None).

``metadata() -> dict``
    ``in_channels``, ``out_channels`` (build the model) plus checkpoint
    fields for :func:`~segnet_domains.checkpoint.save_checkpoint`:
    ``class_names``, ``normalization`` (use the SAME spec in your training
    transforms via :class:`~segnet_domains.training.transforms.Normalized`),
    ``domain`` (``mri``/``fundus``/``aerial``), and where they apply
    ``band_names``, ``class_colors``, ``context``, ``slice_axis``,
    ``tile_size``, ``tile_overlap``.

``train_dataset() -> torch Dataset``
    Usually a MONAI ``CacheDataset`` of dicts whose transform ends with items
    ``{"image": C×H×W float32 normalised, "label": 1×H×W class indices,
    "mask": 1×H×W (optional; 1 = pixel counts)}``; a multi-sample crop may
    return a list of such dicts (MONAI's collate flattens it). Random
    transforms are re-seeded from ``train.seed`` and the epoch through
    ``dataset.transform.set_random_state`` (determinism, exact resume).

``val_cases() -> Iterable[Case]``
    Whole validation images or volumes: ``Case(name, image, label, mask,
    volume)`` with raw pixels (the Segmenter normalises with the checkpoint's
    spec); ``label=None`` marks an inference-only case (predicted, listed,
    not scored).

Optional: ``train_labels()`` yielding ``(label, mask)`` per training image
(needed for ``train.class_weights: median_frequency``), and
``predict(segmenter, case)`` (default: ``segmenter.predict_volume`` for
volumes, ``segmenter.predict`` for images; override to tile big scenes).

Regression tasks (crowd counting, ``segnet_domains.counting.task``) plug in
with two more hooks and a class attribute: ``loss(num_classes, weights)``
returns the training loss ``loss(output, label, mask)`` (default ``None``:
Dice + CE; counting: MSE on the density, whose ``"label"`` items are float
maps), ``evaluate(segmenter)`` returns the validation report itself (default
``None``: the engine scores ``val_cases()`` as segmentations; the report
needs ``mean``, ``pooled``, ``miou``, ``per_class_mean``, ``n_cases``,
``cases``, ``inference_only``), and ``best_mode = "min"`` makes ``best.pt``
the lowest ``best_metric`` (an error such as MAE). ``model.head: density``
builds SegNet's one-channel density head.

Bad data must raise :class:`~segnet_domains.errors.InputError` naming the
file (use :func:`check_labels` for label values); with ``data.skip_corrupt:
true`` a task may skip an unreadable file with a ``warnings.warn`` instead.

Example (a minimal 2D task)::

    from monai.data import CacheDataset
    from monai.transforms import Compose, RandFlipd, RandSpatialCropd
    from segnet_domains.training import Case, Task, register_task
    from segnet_domains.training.transforms import Normalized

    NORM = {"mode": "scale", "scale": 255.0}

    class ToyTask(Task):
        name = "toy"
        data_defaults = {"patch": 64}

        def metadata(self):
            return {"in_channels": 3, "out_channels": 2, "class_names": ["background", "thing"],
                    "normalization": NORM, "domain": "aerial"}

        def _pairs(self):   # [(image C×H×W, label 1×H×W)] read from self.data["root"]
            ...

        def train_dataset(self):
            p = self.data["patch"]
            items = [{"image": im, "label": lab} for im, lab in self._pairs()]
            return CacheDataset(items, Compose([
                Normalized("image", NORM),
                RandSpatialCropd(["image", "label"], (p, p), random_size=False),
                RandFlipd(["image", "label"], prob=0.5, spatial_axis=1),
            ]), progress=False)

        def val_cases(self):
            for i, (im, lab) in enumerate(self._pairs()):
                yield Case(f"tile{i}", im, lab[0])

    register_task("toy", ToyTask)     # or TASKS["toy"] = "mypkg.toy:ToyTask"
"""

from segnet_domains.training.config import DEFAULTS, ModelConfig, RunConfig, TrainSettings, build_config
from segnet_domains.training.data import check_labels
from segnet_domains.training.engine import TrainResult, train
from segnet_domains.training.loss import SegmentationLoss, median_frequency_weights
from segnet_domains.training.task import TASKS, Case, Task, get_task, register_task
from segnet_domains.training.validation import validate

__all__ = [
    "DEFAULTS",
    "TASKS",
    "Case",
    "ModelConfig",
    "RunConfig",
    "SegmentationLoss",
    "Task",
    "TrainResult",
    "TrainSettings",
    "build_config",
    "check_labels",
    "get_task",
    "median_frequency_weights",
    "register_task",
    "train",
    "validate",
]
