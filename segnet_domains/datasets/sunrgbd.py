"""SUN RGB-D as the SUNRGBD toolbox distributes it (``task: sunrgbd``).

Layout (Song et al., CVPR 2015; https://rgbd.cs.princeton.edu/)::

    ROOT/SUNRGBD/kv1/NYUdata/NYU0001/image/NYU0001.jpg          RGB
    ROOT/SUNRGBD/kv1/NYUdata/NYU0001/depth_bfx/NYU0001.png      refined depth, uint16, bit-rotated mm
    ROOT/SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat      MATLAB v5: struct array ``SUNRGBDMeta``
                                                      (``rgbpath``, ``depthname``, … per image)
    ROOT/SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat     MATLAB v7.3 (HDF5): ``SUNRGBD2Dseg/seglabel``,
                                                      one object reference per image (same order
                                                      as SUNRGBDMeta) to a W×H label array, 0–37
    ROOT/SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat ``alltrain`` (5285) / ``alltest`` (5050):
                                                      sequence folders as paths of the authors' machine

``rgbpath`` and the split entries are ``/n/fs/sun3d/data/SUNRGBD/…`` paths;
they are resolved under ``--data-root`` by their trailing components, and
an image is in a split when its sequence folder (``rgbpath`` minus
``image/NAME.jpg``) is listed. Labels: 0 = unlabelled (ignored), 1–37 the
37 classes. Depth is decoded as the toolbox's ``read3dPoints.m`` does
(``bitor(bitshift(d, -3), bitshift(d, 13))``, millimetres) and scaled per
band from 0–10 m. ``data.bands: [red, green, blue]`` (the paper) or
``[red, green, blue, depth]`` (RGB-D).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import ClassVar

import numpy as np

from segnet_domains.datasets.layout import RGB, Band, DatasetLayout, dataset_folder, resolve_listed
from segnet_domains.datasets.task import BenchmarkTask, Sample
from segnet_domains.errors import InputError
from segnet_domains.io.images import read_image

LAYOUT = DatasetLayout(
    name="SUN-RGBD",
    folder=".",  # the data root holds SUNRGBD/ and SUNRGBDtoolbox/
    files={
        "meta": "SUNRGBDtoolbox/Metadata/SUNRGBDMeta.mat",
        "seg": "SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat",
        "split": "SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat",
        "image": "{sequence}/image/{name}",
        "depth": "{sequence}/depth_bfx/{name}",
    },
    splits={"train": "alltrain", "test": "alltest"},
    split_aliases={"val": "test"},
    classes=(
        "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
        "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
        "floor_mat", "clothes", "ceiling", "books", "fridge", "tv", "paper", "towel", "shower_curtain",
        "box", "whiteboard", "person", "night_stand", "toilet", "sink", "lamp", "bathtub", "bag",
    ),
    colors=(
        (119, 119, 119), (244, 243, 131), (137, 28, 157), (150, 255, 255), (54, 114, 113),
        (0, 0, 176), (255, 69, 0), (87, 112, 255), (0, 163, 33), (255, 150, 255), (255, 180, 10),
        (101, 70, 86), (38, 230, 0), (255, 120, 70), (117, 41, 121), (150, 255, 0), (132, 0, 255),
        (24, 209, 255), (191, 130, 35), (219, 200, 109), (154, 62, 86), (255, 190, 190),
        (255, 0, 255), (152, 163, 55), (192, 79, 212), (230, 230, 230), (53, 130, 64),
        (155, 249, 152), (87, 64, 34), (214, 209, 175), (170, 0, 59), (255, 0, 0), (193, 195, 234),
        (70, 72, 115), (255, 255, 0), (52, 57, 131), (12, 83, 45),
    ),
    bands=(*RGB, Band("depth", 0.0, 10000.0)),
    default_bands=("red", "green", "blue"),
    label_values={v: v - 1 for v in range(1, 38)},
    ignore_values=(0,),
)  # fmt: skip

#: The part of the authors' paths that is the data root.
SUNRGBD_PREFIX = "SUNRGBD"


def decode_depth(raw: np.ndarray) -> np.ndarray:
    """SUN RGB-D depth PNG → millimetres (``read3dPoints.m``: rotate the 16 bits right by 3)."""
    d = np.asarray(raw).astype(np.uint16)
    return ((d >> 3) | (d << 13)).astype(np.float32)


def sequence_key(path: str) -> str:
    """``kv1/NYUdata/NYU0001`` from ``/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001[/]``."""
    parts = PurePosixPath(str(path).strip().rstrip("/")).parts
    if SUNRGBD_PREFIX in parts:
        parts = parts[len(parts) - parts[::-1].index(SUNRGBD_PREFIX) :]
    return "/".join(parts)


class SunRgbdTask(BenchmarkTask):
    """SUN RGB-D, 37 classes (SegNet paper Table 4: RGB)."""

    name: ClassVar[str] = "sunrgbd"
    layout: ClassVar[DatasetLayout] = LAYOUT

    def folder(self) -> Path:
        return dataset_folder(self.data["root"], LAYOUT, LAYOUT.files["meta"])

    def index(self, split: str) -> list[Sample]:
        import scipy.io

        folder = self.folder()
        meta_path, split_path = (self.pattern_path(folder, r) for r in ("meta", "split"))
        try:
            meta = scipy.io.loadmat(meta_path, squeeze_me=True, struct_as_record=False)["SUNRGBDMeta"]
            listed = scipy.io.loadmat(split_path, squeeze_me=True, struct_as_record=False)[
                LAYOUT.splits[split]
            ]
        except (OSError, ValueError, KeyError, NotImplementedError) as exc:
            bad = meta_path if "meta" not in locals() else split_path
            raise InputError(
                bad, f"cannot be read as the toolbox's .mat ({type(exc).__name__}: {exc})"
            ) from None
        wanted = {sequence_key(p) for p in np.atleast_1d(listed)}
        samples = []
        for row, m in enumerate(np.atleast_1d(meta)):
            rgb = resolve_listed(folder, str(m.rgbpath), meta_path)
            sequence = rgb.parent.parent
            key = sequence_key(str(m.rgbpath)).rsplit("/", 2)[0]  # minus image/NAME.jpg
            if key not in wanted:
                continue
            files = {"image": rgb, "depth": sequence / "depth_bfx" / str(m.depthname)}
            name = key.replace("/", "__")
            samples.append(Sample(name, files, {"row": row, "seg": self.pattern_path(folder, "seg")}))
        return samples

    def read_bands(self, sample: Sample, bands: list[str]) -> np.ndarray:
        rgb = read_image(sample.files["image"])
        if rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise InputError(sample.files["image"], f"expected an RGB image, got shape {rgb.shape}")
        layers = [*np.moveaxis(rgb, -1, 0).astype(np.float32)]
        if "depth" in bands:
            depth = read_image(sample.files["depth"])
            if depth.shape != rgb.shape[:2]:
                raise InputError(sample.files["depth"], f"depth size {depth.shape} differs from the image's")
            layers.append(decode_depth(depth))
        names = ["red", "green", "blue", "depth"][: len(layers)]
        return np.stack([layers[names.index(b)] for b in bands])

    def read_native_label(self, sample: Sample) -> np.ndarray:
        """Row ``sample.extra["row"]`` of ``SUNRGBD2Dseg/seglabel`` (stored transposed, MATLAB order)."""
        import h5py

        path = sample.extra["seg"]
        try:
            with h5py.File(path, "r") as f:
                refs = f["SUNRGBD2Dseg"]["seglabel"]
                ref = (
                    refs[sample.extra["row"], 0]
                    if refs.shape[0] > refs.shape[-1]
                    else refs[0, sample.extra["row"]]
                )
                return np.asarray(f[ref][()]).T
        except (OSError, KeyError, ValueError, IndexError) as exc:
            raise InputError(
                path, f"cannot read label {sample.extra['row']} ({type(exc).__name__}: {exc})"
            ) from None

    def label_source(self, sample: Sample) -> str:
        return f"{sample.extra['seg']} (seglabel {sample.extra['row'] + 1})"
