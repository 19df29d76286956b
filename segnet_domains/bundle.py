"""Export a checkpoint as a MONAI bundle (``segnet-domains export-bundle CKPT OUT_DIR``).

Layout (https://docs.monai.io/en/stable/mb_specification.html)::

    OUT_DIR/configs/metadata.json    MONAI bundle metadata (network_data_format, versions, labels)
    OUT_DIR/configs/inference.json   the inference workflow (run with python -m monai.bundle run)
    OUT_DIR/models/model.pt          the weights + metadata: a segnet-domains safetensors checkpoint
    OUT_DIR/models/model.onnx        with --onnx: the same model for onnxruntime/TensorRT (export-onnx)
    OUT_DIR/docs/README.md           what the model is and how to run it

``models/model.pt`` is deliberately *not* a ``torch.save`` pickle: it is the
self-describing safetensors checkpoint of :mod:`segnet_domains.checkpoint`
(loading it runs no code from the file). The inference config builds the
shared :class:`~segnet_domains.inference.Segmenter` from it and segments
every ``*.nii``/``*.nii.gz`` in ``input_dir`` slice by slice in RAS,
writing ``<name>_seg.nii.gz`` masks aligned voxel for voxel with their input
(same shape, affine, qform/sform) into ``output_dir``::

    python -m monai.bundle run --config_file OUT_DIR/configs/inference.json \\
        --bundle_root OUT_DIR --input_dir IN --output_dir OUT

Adding ``--checkpoint OUT_DIR/models/model.onnx`` runs the ONNX model in
onnxruntime through the same Segmenter (same pre- and post-processing).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch

from segnet_domains.checkpoint import ModelInfo, verify_checkpoint
from segnet_domains.errors import InputError
from segnet_domains.inference import Segmenter
from segnet_domains.io.atomic import atomic_output
from segnet_domains.io.safety import FileOutput, FolderOutput, check_outputs, is_json_file, is_nifti_file
from segnet_domains.medical.nifti import NIFTI_SUFFIXES, is_nifti
from segnet_domains.onnx_export import export_onnx
from segnet_domains.predict_files import predict_volume_file

MASK_POSTFIX = "_seg"


def inference_config(device: str = "auto") -> dict[str, Any]:
    """The MONAI bundle inference workflow (``configs/inference.json``)."""
    return {
        "imports": ["$from segnet_domains.bundle import predict_folder"],
        "bundle_root": ".",
        "input_dir": "$@bundle_root + '/sample'",
        "output_dir": "$@bundle_root + '/eval'",
        "checkpoint": "$@bundle_root + '/models/model.pt'",
        "device": device,
        "axis": None,
        "batch_size": 8,
        "backend": "auto",
        "segmenter": {
            "_target_": "segnet_domains.inference.Segmenter.from_checkpoint",
            "path": "@checkpoint",
            "device": "@device",
            "batch_size": "@batch_size",
            "backend": "@backend",
        },
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$predict_folder(@segmenter, @input_dir, @output_dir, axis=@axis)"],
    }


def metadata(info: ModelInfo) -> dict[str, Any]:
    """MONAI bundle ``metadata.json`` for a checkpoint's :class:`ModelInfo`."""
    from segnet_domains import __version__

    labels = {str(i): name for i, name in enumerate(info.class_names)}
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
        "0.8.1/meta_schema_20220324.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": "exported by segnet-domains"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"segnet-domains": __version__, "nibabel": _version("nibabel")},
        "name": f"SegNet {info.domain or ''} segmentation".replace("  ", " "),
        "task": f"2D slice-wise segmentation of 3D volumes: {', '.join(info.class_names[1:])}",
        "description": (
            "SegNet (Badrinarayanan et al., TPAMI 2017, https://arxiv.org/abs/1511.00561): VGG16 encoder, "
            "decoder upsampling with the encoder's max-pooling indices. Runs slice by slice along "
            f"RAS axis {info.slice_axis if info.slice_axis is not None else 2} "
            f"with {info.context} neighbour slice(s) per side as extra channels."
        ),
        "authors": "segnet-domains",
        "copyright": "segnet-domains contributors, MIT licence",
        "references": ["Badrinarayanan, Kendall, Cipolla. SegNet. TPAMI 2017. arXiv:1511.00561"],
        "intended_use": "research only",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "MR" if info.domain == "mri" else (info.domain or "unknown"),
                    "num_channels": info.bands,
                    "spatial_shape": ["*", "*", "*"],
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": False,
                    "channel_def": {str(i): n for i, n in enumerate(info.band_names or ["image"])},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": 1,
                    "spatial_shape": ["*", "*", "*"],
                    "dtype": "uint8",
                    "value_range": list(range(info.out_channels)),
                    "is_patch_data": False,
                    "channel_def": labels,
                }
            },
        },
        "segnet_domains": info.to_dict(),
    }


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def readme(info: ModelInfo, onnx: bool = False) -> str:
    """``docs/README.md`` of the bundle."""
    classes = ", ".join(f"{i} = {n}" for i, n in enumerate(info.class_names))
    prov = info.provenance or {}
    axis = info.slice_axis if info.slice_axis is not None else 2
    trained = f"task `{prov.get('task', 'unknown')}`, epoch {prov.get('epoch', '?')}"
    return f"""# SegNet bundle ({info.domain or "generic"})

SegNet (Badrinarayanan, Kendall, Cipolla, TPAMI 2017, https://arxiv.org/abs/1511.00561) exported by
`segnet-domains export-bundle`. No MONAI model-zoo bundle had a SegNet before.

* Input: 3D NIfTI volumes (`*.nii`, `*.nii.gz`), one channel, any orientation: the volume is
  reoriented to RAS and segmented slice by slice along axis {axis}
  ({info.context} neighbour slice(s) per side as extra channels), normalisation `{info.normalization}`.
* Output: `<name>{MASK_POSTFIX}.nii.gz` per input, uint8 labels ({classes}), same shape, affine and
  qform/sform as the input.
* Architecture: `{info.architecture}` with `{info.args}`.
* Trained: {trained}; library {prov.get("library", "")}.

## Run

```
pip install segnet-domains
python -m monai.bundle run --config_file configs/inference.json --bundle_root . \\
    --input_dir IN --output_dir OUT [--device cpu|cuda]
```

## Weights

`models/model.pt` is a segnet-domains checkpoint: a safetensors file with a JSON header (architecture,
classes, normalisation), not a `torch.save` pickle, so loading it cannot run code. Load it with
`segnet_domains.load_checkpoint("models/model.pt")` (model + metadata) or
`segnet_domains.Segmenter.from_checkpoint(...)`.
{_ONNX_README if onnx else ""}"""


_ONNX_README = """
`models/model.onnx` is the same model exported to ONNX (`segnet-domains export-onnx`): input `image`
(N×C×H×W float32, normalised as above, H and W padded to a multiple of its `pad_multiple`), output `logits`
(N×K×H×W), dynamic batch, height and width; the checkpoint's header is in its `metadata_props`.
Run the bundle on it with onnxruntime (TensorRT/CUDA execution providers where installed):

```
python -m monai.bundle run --config_file configs/inference.json --bundle_root . \\
    --checkpoint models/model.onnx --input_dir IN --output_dir OUT
```
"""


def is_bundle(folder: Path) -> bool:
    """A folder written by :func:`export_bundle` (its ``configs/metadata.json`` says so)."""
    return is_json_file(folder / "configs" / "metadata.json", key="segnet_domains")


def bundle_output(out_dir: str | Path) -> FolderOutput:
    """The bundle folder as an output, for :func:`~segnet_domains.io.safety.check_outputs`."""
    return FolderOutput(out_dir, "MONAI bundle", "OUT_DIR", ours=is_bundle, replace=True)


def export_bundle(
    checkpoint: str | Path,
    out_dir: str | Path,
    device: str = "auto",
    force: bool = False,
    onnx: bool = False,
    opset: int | None = None,
) -> Path:
    """Write a MONAI bundle for ``checkpoint`` into ``out_dir`` (atomically).

    The whole checkpoint is verified first (header, every tensor's shape, the
    file's size), so a truncated or inconsistent one is never shipped.

    Args:
        checkpoint: a segnet-domains checkpoint.
        out_dir: a new or empty folder, or (with ``force``) an earlier bundle to replace.
        device: device written into ``configs/inference.json``.
        force: replace an existing bundle (never any other folder).
        onnx: also write ``models/model.onnx`` (:func:`segnet_domains.onnx_export.export_onnx`).
        opset: its ONNX opset (default: the exporter's).

    Raises:
        InputError: unusable checkpoint; ``out_dir`` is a file, a non-empty
            folder that is not a bundle, holds the checkpoint, is the working
            folder, or an existing bundle without ``force``.
    """
    check_outputs([checkpoint], [bundle_output(out_dir)], force=force)
    info = verify_checkpoint(checkpoint)
    out_dir = Path(os.path.abspath(out_dir))
    with atomic_output(out_dir, folder=True) as tmp:
        (tmp / "configs").mkdir(parents=True)
        (tmp / "models").mkdir()
        (tmp / "docs").mkdir()
        (tmp / "configs" / "metadata.json").write_text(json.dumps(metadata(info), indent=2) + "\n")
        (tmp / "configs" / "inference.json").write_text(json.dumps(inference_config(device), indent=2) + "\n")
        shutil.copyfile(checkpoint, tmp / "models" / "model.pt")
        if onnx:
            export_onnx(checkpoint, tmp / "models" / "model.onnx", opset=opset)
        (tmp / "docs" / "README.md").write_text(readme(info, onnx))
    return out_dir


def _strip_nifti(name: str) -> str:
    for suffix in NIFTI_SUFFIXES[::-1]:  # .nii.gz before .nii
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def predict_folder(
    segmenter: Segmenter, input_dir: str | Path, output_dir: str | Path, axis: int | None = None
) -> list[Path]:
    """Segment every NIfTI volume in ``input_dir`` into ``output_dir/<name>_seg.nii.gz``.

    Raises:
        InputError: ``input_dir`` missing or without NIfTI volumes.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise InputError(input_dir, "input folder not found")
    volumes = sorted(p for p in input_dir.iterdir() if p.is_file() and is_nifti(p))
    if not volumes:
        raise InputError(input_dir, "no NIfTI volumes (.nii, .nii.gz) in the input folder")
    outs = [output_dir / f"{_strip_nifti(vol.name)}{MASK_POSTFIX}.nii.gz" for vol in volumes]
    masks = [FileOutput(o, "NIfTI mask", f"mask of {v.name}", ours=is_nifti_file, exists="ours", create=True)
             for v, o in zip(volumes, outs)]  # fmt: skip
    check_outputs(volumes, masks)  # a mask never replaces an input volume or a foreign file
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for vol, out in zip(volumes, outs):
        predict_volume_file(segmenter, vol, out, axis=axis, progress=False)
        print(f"wrote {out}", flush=True)
        written.append(out)
    return written
