"""NIfTI volumes through nibabel: read, reorient to RAS for the network, write masks back aligned.

The network always sees a volume in RAS+ orientation (axis 0 runs to the
patient's Right→Left… precisely: increasing index = towards R, A, S), so a
volume stored as LPS, with permuted or flipped axes, gives the same slices as
its RAS copy. The mask goes back through the inverse transform and is written
with the input's own affine, header, qform and sform, voxel for voxel aligned.
"""

from __future__ import annotations

import gzip
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from segnet_domains.errors import InputError
from segnet_domains.io.atomic import atomic_output
from segnet_domains.io.safety import check_claimed_size, check_input

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_RAS = axcodes2ornt(("R", "A", "S"))


def is_nifti(path: str | Path) -> bool:
    """True for ``.nii`` / ``.nii.gz`` names."""
    name = str(path).lower()
    return name.endswith(NIFTI_SUFFIXES)


@dataclass
class Volume:
    """A 3D volume and its geometry.

    Attributes:
        data: the voxels as stored on disk (``float32``), shape ``(I, J, K)``.
        image: the nibabel image (affine, header, qform/sform).
        path: where it came from.
    """

    data: np.ndarray
    image: nib.Nifti1Image
    path: Path

    @property
    def affine(self) -> np.ndarray:
        return self.image.affine

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Orientation of the stored axes, e.g. ``("L", "P", "S")``."""
        return nib.aff2axcodes(self.affine)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the stored axes."""
        return tuple(float(z) for z in self.image.header.get_zooms()[:3])  # type: ignore[return-value]

    def to_ras(self) -> np.ndarray:
        """The voxels reoriented to RAS+ (what the network sees)."""
        return apply_orientation(self.data, self._to_ras())

    def from_ras(self, ras_array: np.ndarray) -> np.ndarray:
        """Bring an array in RAS+ voxel order back to the stored orientation (last 3 axes)."""
        back = ornt_transform(_RAS, io_orientation(self.affine))
        if ras_array.ndim == 3:
            return apply_orientation(ras_array, back)
        return np.stack([apply_orientation(a, back) for a in ras_array])

    def ras_affine(self) -> np.ndarray:
        """Affine of :meth:`to_ras`'s array."""
        return self.affine @ inv_ornt_aff(self._to_ras(), self.data.shape)

    def _to_ras(self) -> np.ndarray:
        return ornt_transform(io_orientation(self.affine), _RAS)


def read_volume(path: str | Path) -> Volume:
    """Read a 3D NIfTI volume (a singleton 4th dimension is dropped).

    The header's claimed voxels are checked against the file's size before
    any data is read; a header without orientation (qform code 0 and no
    usable sform) is read with its voxel sizes only, with a warning.

    Raises:
        InputError: missing, not NIfTI, truncated/corrupt, not 3D, a header
            claiming more data than the file holds, or NaN/Inf voxels.
    """
    path = check_input(path, "volume")
    try:
        img = nib.load(path)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, gzip.BadGzipFile) as exc:
        raise InputError(path, f"not a readable NIfTI volume ({_short(exc)})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(path, f"expected NIfTI, got {type(img).__name__}")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        img = img.slicer[..., 0]
        shape = img.shape
    if len(shape) != 3:
        raise InputError(path, f"expected a 3D volume, got {len(shape)}D with shape {tuple(shape)}")
    _check_data_size(path, img)
    img = _check_orientation(path, img)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(path, f"truncated or corrupt NIfTI data ({_short(exc)})") from None
    if not np.isfinite(data).all():
        raise InputError(path, f"contains {int((~np.isfinite(data)).sum())} NaN/Inf voxel(s)")
    if min(shape) < 2:
        raise InputError(path, f"volume shape {tuple(shape)} is too small to segment")
    return Volume(data=data, image=img, path=path)


def _check_data_size(path: Path, img: nib.Nifti1Image) -> None:
    """The voxels the header claims must fit in the file (raw ``.nii``) or its compressed stream."""
    header = img.header
    dtype = np.dtype(header.get_data_dtype())
    shape = tuple(int(n) for n in header.get_data_shape())
    claimed = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    gz = str(path).lower().endswith(".gz")
    check_claimed_size(
        path,
        claimed,
        description=f"{'×'.join(map(str, shape))} {dtype.name} voxels",
        compression="deflate" if gz else None,
        offset=0 if gz else int(header.get("vox_offset", 0)),
        memory_bytes=int(np.prod(shape, dtype=np.float64)) * 4,  # read as float32
    )


def _check_orientation(path: Path, img: nib.Nifti1Image) -> nib.Nifti1Image:
    """Warn when the header has no orientation; replace an unusable (singular) affine by the voxel sizes."""
    header = img.header
    qcode, scode = int(header["qform_code"]), int(header["sform_code"])
    sform = header.get_sform()
    sform_usable = scode > 0 and abs(np.linalg.det(sform[:3, :3])) > 1e-12
    if qcode == 0 and not sform_usable:
        what = "sform is all zeros" if not np.any(sform[:3, :3]) else "sform code is 0"
        warnings.warn(
            f"{path}: no orientation in the header (qform code 0, {what}); "
            "assuming RAS axes with the voxel sizes, as nibabel does — check the mask's alignment",
            stacklevel=3,
        )
        if scode > 0:  # a declared but singular sform: fall back to the voxel sizes
            img = nib.Nifti1Image(img.dataobj, header.get_base_affine(), header=header)
            img.set_sform(None, code=0)
    return img


def write_like(
    reference: Volume, array: np.ndarray, path: str | Path, dtype: np.dtype | type = np.uint8
) -> Path:
    """Write ``array`` (stored orientation, same shape) with ``reference``'s affine and header.

    The qform and sform (and their codes) are copied, the data type set to
    ``dtype`` and the intensity scaling reset, so viewers overlay the mask
    exactly on the image. Written atomically.
    """
    if array.shape[-3:] != reference.data.shape:
        raise ValueError(f"array shape {array.shape} does not match volume {reference.data.shape}")
    header = reference.image.header.copy()
    header.set_data_dtype(dtype)
    out = nib.Nifti1Image(np.asarray(array, dtype=dtype), reference.affine, header=header)
    qform, qcode = reference.image.get_qform(coded=True)
    sform, scode = reference.image.get_sform(coded=True)
    if qform is not None:
        out.set_qform(qform, code=int(qcode))
    if sform is not None:
        out.set_sform(sform, code=int(scode))
    out.header.set_slope_inter(1.0, 0.0)
    out.header["descrip"] = b"segnet-domains labels"
    path = Path(path)
    with atomic_output(path) as tmp:
        nib.save(out, tmp)
    return path


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
