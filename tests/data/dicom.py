"""Generators of DICOM MR series with a known (oblique, anisotropic) geometry, written with pydicom.

``write_series(folder, data, affine)`` writes one single-frame MR Image
Storage file per slice of ``data`` (``I×J×K``: columns, rows, slices), with
Image Position/Orientation (Patient), Pixel Spacing and the slice spacing
derived from the RAS ``affine`` exactly as a scanner would store them (LPS).
Stored values are ``int16`` with a Rescale Slope/Intercept, so a reader that
forgets the rescale gets other numbers. Options shuffle the file names, write
a compressed transfer syntax, or put several series in one folder.

``block_volume`` makes a volume constant on 2×2×2 blocks, so that
:func:`threshold_segnet` (a one-stage SegNet whose weights make the label
``intensity > threshold``) segments it exactly, whatever the slicing axis:
a model whose output is known by construction, for tests about IO and
geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from segnet_domains import SegNet

LPS = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS (its own inverse)


def rotation(degrees_xyz: tuple[float, float, float]) -> np.ndarray:
    """Rotation matrix (RAS) from rotations about x, then y, then z, in degrees."""
    ax, ay, az = np.deg2rad(degrees_xyz)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def oblique_affine(
    degrees: tuple[float, float, float] = (17.0, -11.0, 23.0),
    spacing: tuple[float, float, float] = (0.8, 0.95, 2.5),
    origin: tuple[float, float, float] = (-41.5, 27.25, -13.0),
    flip_slices: bool = False,
) -> np.ndarray:
    """A RAS affine with rotated axes and anisotropic voxels.

    ``flip_slices`` negates the slice axis (determinant < 0): its slices then
    run against the DICOM slice normal (row × column direction), so a reader
    that sorts along the normal stores them in reverse.
    """
    affine = np.eye(4)
    affine[:3, :3] = rotation(degrees) @ np.diag(spacing)
    if flip_slices:
        affine[:3, 2] *= -1
    affine[:3, 3] = origin
    return affine


def block_volume(shape: tuple[int, int, int], levels: tuple[float, ...], seed: int = 0) -> np.ndarray:
    """A float32 volume constant on 2×2×2 blocks, each block one of ``levels`` (shape must be even)."""
    if any(s % 2 for s in shape):
        raise ValueError(f"shape {shape} must be even")
    rng = np.random.default_rng(seed)
    coarse = rng.choice(np.asarray(levels, np.float32), size=tuple(s // 2 for s in shape))
    return np.kron(coarse, np.ones((2, 2, 2), np.float32))


def threshold_segnet(low: float, high: float | None = None) -> SegNet:
    """A one-stage SegNet whose label counts the thresholds a voxel exceeds, on 2×2-block-constant slices.

    With ``high``: 0 at or below ``low``, 1 above ``low``, 2 above ``high``
    (three classes); without: ``intensity > low`` (two classes). Exact when
    every intensity is at least 10 away from both thresholds.

    Encoder: one conv whose channels compute ``relu(x - low)`` and
    ``relu(x - high)`` (BatchNorm left at the identity), 2×2 index pooling.
    Decoder: unpooling puts each block's value back at its top-left pixel
    (equal values: max pooling keeps the first), and the classifier's 3×3
    kernel sums the pixel and its up, left and up-left neighbours, which
    spreads that value over the whole block. Class 0 scores a constant 1,
    class 1 ``x - low``, class 2 ``20 (x - high)``. Use it with
    ``normalization={"mode": "none"}``.
    """
    model = SegNet(1, 3 if high is not None else 2, features=(2,), depths=(1,))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        unit = model.encoder.stages[0][0]
        unit.norm.weight.fill_(1.0)
        unit.norm.running_mean.zero_()
        unit.norm.running_var.fill_(1.0)
        head = model.decoder.classifier
        head.bias[0] = 1.0
        for channel, (threshold, gain) in enumerate([(low, 1.0), (high, 20.0)]):
            if threshold is None:
                continue
            unit.conv.weight[channel, 0, 1, 1] = 1.0
            unit.conv.bias[channel] = -threshold
            head.weight[channel + 1, channel, :2, :2] = gain  # pixel, up, left, up-left
    return model.eval()


def write_series(
    folder: Path,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    slope: float = 0.5,
    intercept: float = -20.0,
    series_uid: str | None = None,
    description: str = "FLAIR oblique",
    series_number: int = 3,
    study_uid: str | None = None,
    frame_uid: str | None = None,
    shuffle: bool = False,
    transfer_syntax: str | None = None,
    prefix: str = "IM",
) -> list[Path]:
    """Write ``data`` (``I×J×K``: columns, rows, slices) as a DICOM MR series; returns files in slice order.

    ``data`` must be representable as ``int16 * slope + intercept``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    raw = np.rint((np.asarray(data, np.float64) - intercept) / slope)
    if not np.allclose(raw * slope + intercept, data, atol=1e-4) or np.abs(raw).max() > 32767:
        raise ValueError("data is not int16 * slope + intercept")
    raw = raw.astype(np.int16)
    cols, rows, n = data.shape
    col_step, row_step, slice_step = (affine[:3, i] for i in range(3))
    row_cos = LPS @ col_step / np.linalg.norm(col_step)  # along a row = increasing column index i
    col_cos = LPS @ row_step / np.linalg.norm(row_step)  # down a column = increasing row index j
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    names = list(range(n))
    if shuffle:
        np.random.default_rng(5).shuffle(names)
    files = []
    for k in range(n):
        ds = _mr_slice(study_uid, series_uid, frame_uid, description, series_number)
        ds.InstanceNumber = names[k] + 1
        ds.ImagePositionPatient = [_ds(v) for v in LPS @ (affine[:3, 3] + k * slice_step)]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row_cos, *col_cos)]
        ds.PixelSpacing = [_ds(np.linalg.norm(row_step)), _ds(np.linalg.norm(col_step))]
        ds.SliceThickness = _ds(np.linalg.norm(slice_step))
        ds.SpacingBetweenSlices = _ds(np.linalg.norm(slice_step))
        ds.Rows, ds.Columns = rows, cols
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _ds(slope), _ds(intercept), "US"
        frame = np.ascontiguousarray(raw[:, :, k].T)  # rows × columns
        ds.PixelData = frame.tobytes()
        if transfer_syntax is not None:
            ds.compress(transfer_syntax, frame)
        path = folder / f"{prefix}{names[k] + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def _ds(value: float) -> str:
    """A decimal string (DS) that keeps the value to ~1e-10 relative, within DICOM's 16 characters."""
    text = f"{float(value):.10g}"
    return text if len(text) <= 16 else f"{float(value):.9g}"


def _mr_slice(study_uid: str, series_uid: str, frame_uid: str, description: str, number: int) -> Dataset:
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    ds.PatientName, ds.PatientID = "Test^Oblique", "SEG0001"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "A1"
    ds.ReferringPhysicianName = ""
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "MR", number, description
    ds.Manufacturer = "segnet-domains tests"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
    ds.EchoTrainLength, ds.PositionReferenceIndicator = 1, ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    return ds


def save_threshold_checkpoint(path: Path, thresholds: tuple[float, ...], class_names: list[str]) -> Path:
    """:func:`threshold_segnet` saved as a checkpoint (no normalisation, MRI domain, known provenance)."""
    from segnet_domains import save_checkpoint

    return save_checkpoint(
        path,
        threshold_segnet(*thresholds),
        class_names=class_names,
        normalization={"mode": "none"},
        domain="mri",
        provenance={"task": "threshold", "epoch": 7},
    )
