"""Writers that put synthetic data on disk in each data set's distributed layout and formats.

File names and folders come from the readers' own declarations, so a layout
is spelled once: ATLAS R2.0 (:data:`segnet_domains.medical.atlas.ANAT_FOLDER`,
:func:`~segnet_domains.medical.atlas.t1w_path`,
:func:`~segnet_domains.medical.atlas.mask_path_for`), ATLAS R1.2
(:mod:`segnet_domains.medical.atlas_r12`), RITE
(:data:`segnet_domains.medical.rite.FILES`), image/label raster pairs
(:class:`segnet_domains.geo.dataset.AerialLayout`) and UCF-QNRF
(:mod:`segnet_domains.counting.task`). The benchmark families (CamVid …)
are written from their :class:`~segnet_domains.datasets.layout.DatasetLayout`
by ``tests/data/benchmarks.py``.

Formats are the real ones: gzip NIfTI with qform/sform (nibabel), RGB TIFF +
PNG + GIF (tifffile, imageio), tiled DEFLATE GeoTIFFs with CRS, nodata and
colour tables (rasterio), JPEG + MATLAB v5 ``.mat`` (scipy).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import rasterio
import tifffile
from affine import Affine
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform
from scipy.io import savemat

from segnet_domains.counting.task import ANNOTATION_NAME, IMAGE_NAME
from segnet_domains.geo.dataset import AerialLayout
from segnet_domains.medical import atlas_r12, rite
from segnet_domains.medical.atlas import mask_path_for, t1w_path
from segnet_domains.synthetic import aerial, brain, counting, fundus

# --------------------------------------------------------------------------- formats


def write_nifti(
    path: str | Path,
    ras_volume: np.ndarray,
    affine: np.ndarray,
    dtype: type = np.float32,
    codes: tuple[int, int] = (4, 4),
    description: str | None = None,
) -> Path:
    """Store a RAS-ordered array as NIfTI under ``affine``, reordering voxels so the anatomy is kept.

    Args:
        path: ``.nii`` or ``.nii.gz``.
        ras_volume: voxel order R, A, S.
        affine: the stored voxel-to-RAS affine (any orientation; a RAS one stores the array as given).
        dtype: stored data type.
        codes: ``(qform_code, sform_code)`` (4: MNI; 1: scanner; 2: aligned).
        description: the header's ``descrip``.
    """
    to_stored = ornt_transform(axcodes2ornt(("R", "A", "S")), io_orientation(affine))
    stored = apply_orientation(np.asarray(ras_volume), to_stored).astype(dtype)
    img = nib.Nifti1Image(stored, affine)
    img.set_qform(affine, code=codes[0])
    img.set_sform(affine, code=codes[1])
    img.header.set_xyzt_units("mm")
    if description is not None:
        img.header["descrip"] = description.encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


#: Georeferencing of the synthetic scenes: UTM zone 33N, 30 m pixels, upper-left corner in central Europe.
CRS = "EPSG:32633"
PIXEL = 30.0
ORIGIN = (399960.0, 5100000.0)


def grid_transform(origin: tuple[float, float] = ORIGIN, pixel: float = PIXEL) -> Affine:
    """North-up geotransform with its upper-left corner at ``origin`` (metres) and square ``pixel`` size."""
    return Affine.translation(*origin) @ Affine.scale(pixel, -pixel)


def geotiff_profile(
    height: int,
    width: int,
    count: int,
    dtype: str = "uint16",
    nodata: float | None = 0,
    crs: str | None = CRS,
    transform: Affine | None = None,
    blocksize: int = 256,
    compress: str | None = "deflate",
) -> dict[str, Any]:
    """A GTiff creation profile: DEFLATE, internal tiles when both sides reach ``blocksize``, georeferenced.

    ``crs=None`` writes no georeferencing; ``transform`` defaults to :func:`grid_transform`.
    """
    p: dict[str, Any] = {"driver": "GTiff", "height": height, "width": width, "count": count, "dtype": dtype}
    if compress:
        p["compress"] = compress
    if min(height, width) >= blocksize:
        p.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    if nodata is not None:
        p["nodata"] = nodata
    if crs is not None:
        p.update(crs=crs, transform=transform if transform is not None else grid_transform())
    return p


def write_geotiff(
    path: str | Path,
    array: np.ndarray,
    descriptions: Sequence[str] | None = None,
    colormap: Sequence[Sequence[int]] | None = None,
    **profile: Any,
) -> Path:
    """Write ``C×H×W`` (or ``H×W``) ``array`` with :func:`geotiff_profile` (``profile`` overrides it).

    Args:
        descriptions: band names (the first ``C`` are used).
        colormap: RGB per class value, written as band 1's colour table.
    """
    arr = array[None] if array.ndim == 2 else array
    prof = geotiff_profile(arr.shape[1], arr.shape[2], arr.shape[0], str(arr.dtype), **profile)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr)
        if descriptions:
            dst.descriptions = tuple(descriptions[: arr.shape[0]])
        if colormap is not None:
            dst.write_colormap(1, {i: (*c, 255) for i, c in enumerate(colormap)})
    return path


# --------------------------------------------------------------------------- ATLAS R2.0 and R1.2


def write_atlas(
    root: str | Path,
    cases: Iterable[tuple[np.ndarray, np.ndarray | None]],
    affine: np.ndarray,
    subjects_per_site: int | None = None,
) -> list[tuple[Path, Path | None]]:
    """Write ``(t1w, mask or None)`` volumes as ATLAS R2.0 BIDS subjects; returns ``[(t1w, mask)]`` paths.

    Subject ``j`` (0-based) is ``sub-rSSSs{j+1:03d}`` at site ``RSSS``: all at
    ``R001``, or ``subjects_per_site`` per site. A ``None`` mask writes the
    T1w alone (inference only).
    """
    out: list[tuple[Path, Path | None]] = []
    for j, (t1w, mask) in enumerate(cases):
        site = 1 + (j // subjects_per_site if subjects_per_site else 0)
        image = t1w_path(root, f"R{site:03d}", f"sub-r{site:03d}s{j + 1:03d}")
        write_nifti(image, t1w, affine, np.float32)
        mask_path = None if mask is None else write_nifti(mask_path_for(image), mask, affine, np.uint8)
        out.append((image, mask_path))
    return out


def atlas_t1w(
    root: str | Path, subjects: int = 4, seed: int = 0, voxel_mm: float = 1.0
) -> list[tuple[Path, Path]]:
    """ATLAS R2.0-style subjects of :func:`~.brain.t1w_brain` on the MNI grid (``voxel_mm`` > 1: coarser)."""
    rng = np.random.default_rng(seed)
    shape, affine = brain.mni_grid(voxel_mm)
    cases = (brain.t1w_brain(rng, shape) for _ in range(subjects))
    return write_atlas(root, cases, affine)  # type: ignore[return-value]


def atlas_phantoms(
    root: str | Path,
    subjects: int = 5,
    unlabeled: int = 1,
    seed: int = 0,
    shape: tuple[int, int, int] = brain.PHANTOM_SHAPE,
) -> list[tuple[Path, Path | None]]:
    """A miniature ATLAS R2.0 tree of :func:`~.brain.phantom_brain` volumes, three subjects per site.

    ``subjects`` have a mask (one or two lesions, alternately); ``unlabeled`` more have none.
    """
    rng = np.random.default_rng(seed)

    def cases() -> Iterable[tuple[np.ndarray, np.ndarray | None]]:
        for i in range(subjects + unlabeled):
            vol, mask = brain.phantom_brain(rng, shape, lesions=1 + i % 2)
            yield vol, mask if i < subjects else None

    return write_atlas(root, cases(), brain.PHANTOM_AFFINE, subjects_per_site=3)


def write_atlas_r12_subject(
    root: str | Path,
    site: str,
    subject: str,
    t1w: np.ndarray,
    masks: Sequence[np.ndarray],
    affine: np.ndarray,
) -> Path:
    """One ATLAS R1.2 ``standard_MNI`` subject: its T1w and one lesion file per mask; returns its folder."""
    folder = Path(root) / atlas_r12.SUBJECT_FOLDER.format(site=site, id=subject)
    write_nifti(folder / atlas_r12.T1W_NAME.format(id=subject), t1w, affine, np.float32)
    for n, mask in enumerate(masks):
        name = atlas_r12.MASK_NAME.format(id=subject, n=f"_{n}" if n else "")
        write_nifti(folder / name, mask, affine, np.uint8)
    return folder


# --------------------------------------------------------------------------- RITE


def write_rite(
    root: str | Path, make: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]], train: int, test: int
) -> dict[str, list[Path]]:
    """Write ``train`` + ``test`` samples from ``make() -> (rgb, av, fov)`` in RITE's layout.

    Images are RGB TIFFs, annotations colour-coded PNGs, fields of view GIFs
    (:data:`segnet_domains.medical.rite.FILES`); training images are numbered
    from 21, test images from 1. Returns the image paths per split.
    """
    out: dict[str, list[Path]] = {}
    for split, n in (("training", train), ("test", test)):
        out[split] = []
        for sub in rite.FILES.values():  # the folders exist even for an empty split
            (Path(root) / sub.format(split=split, name="x")).parent.mkdir(parents=True, exist_ok=True)
        for number in range(rite.FIRST_NUMBER[split], rite.FIRST_NUMBER[split] + n):
            name = rite.sample_name(split, number)
            rgb, av, fov = make()
            image = rite.sample_path(root, "image", split, name)
            tifffile.imwrite(image, rgb, photometric="rgb")
            iio.imwrite(rite.sample_path(root, "av", split, name), av)
            iio.imwrite(rite.sample_path(root, "fov", split, name), fov)
            out[split].append(image)
    return out


def rite_fundus(root: str | Path, train: int = 6, test: int = 2, seed: int = 0) -> dict[str, list[Path]]:
    """A RITE-style set of full-size :func:`~.fundus.fundus_image` photographs."""
    rng = np.random.default_rng(seed)
    return write_rite(root, lambda: fundus.fundus_image(rng), train, test)


def rite_miniature(
    root: str | Path, train: int = 4, test: int = 2, seed: int = 1, size: tuple[int, int] = fundus.MINI_SIZE
) -> Path:
    """A miniature RITE tree of :func:`~.fundus.rite_scene` images; returns ``root``."""
    rng = np.random.default_rng(seed)
    write_rite(root, lambda: fundus.rite_scene(rng, size), train, test)
    return Path(root)


# --------------------------------------------------------------------------- image/label raster pairs


def write_scene_pair(
    root: str | Path,
    name: str,
    bands: np.ndarray,
    labels: np.ndarray | None,
    transform: Affine,
    band_names: Sequence[str] = aerial.BAND_NAMES,
    colors: Sequence[Sequence[int]] | None = None,
) -> tuple[Path, Path | None]:
    """An image and its label raster, both ``NAME.tif``, in :class:`~segnet_domains.geo.dataset.AerialLayout`.

    The image has nodata 0 and band names; the label raster (uint8, nodata
    :data:`~.aerial.IGNORE`, with ``colors`` as its colour table) shares its grid and CRS.
    """
    layout = AerialLayout()
    image = write_geotiff(
        Path(root) / layout.images / f"{name}.tif", bands, band_names, transform=transform, nodata=0
    )
    label = None
    if labels is not None:
        label = write_geotiff(
            Path(root) / layout.labels / f"{name}.tif",
            labels.astype(np.uint8),
            colormap=colors,
            transform=transform,
            nodata=aerial.IGNORE,
        )
    return image, label


def landsat_pairs(
    root: str | Path, scenes: int = 3, size: tuple[int, int] = (768, 768), seed: int = 0
) -> list[tuple[Path, Path]]:
    """``scenes`` :func:`~.aerial.landsat_scene` image/label pairs ``scene_01`` …, 40 km apart."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(1, scenes + 1):
        bands, labels = aerial.landsat_scene(rng, size)
        transform = grid_transform((500000.0 + 40000 * i, 5200000.0))
        pairs.append(
            write_scene_pair(root, f"scene_{i:02d}", bands, labels, transform, colors=aerial.CLASS_COLORS)
        )
    return pairs  # type: ignore[return-value]


# --------------------------------------------------------------------------- UCF-QNRF


def write_annotation(path: str | Path, points: np.ndarray) -> Path:
    """UCF-QNRF's ``img_NNNN_ann.mat``: MATLAB v5, ``annPoints`` double ``N×2`` (1-based ``x, y``)."""
    savemat(path, {"annPoints": np.asarray(points, np.float64).reshape(-1, 2)}, format="5")
    return Path(path)


def write_ucf_qnrf(
    root: str | Path, train: int = 3, test: int = 2, size: tuple[int, int] = (72, 96), seed: int = 0
) -> Path:
    """``ROOT/Train`` and ``ROOT/Test`` of :func:`~.counting.crowd_image` JPEGs with their annotations.

    Image ``i`` has ``5 + 4·i`` heads; the last test image is grey (UCF-QNRF has a few). Returns ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("Train", train), ("Test", test)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            img, points = counting.crowd_image(rng, size, 5 + 4 * i, grey=split == "Test" and i == n)
            image = folder / IMAGE_NAME.format(number=i)
            iio.imwrite(image, img, quality=92)
            write_annotation(folder / ANNOTATION_NAME.format(stem=image.stem), points)
    return root
