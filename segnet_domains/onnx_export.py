"""Export a SegNet to ONNX with its index unpooling, dynamic batch/height/width and its metadata.

The graph maps a normalised ``N×C×H×W`` float32 batch (input ``image``) to
class scores ``N×K×H×W`` float32 (output ``logits``): exactly what
:meth:`segnet_domains.inference.Segmenter.forward` gives its backend, so the
pre- and post-processing (normalisation, padding to the network's stride,
softmax, cropping, flips) stay in the one inference path and are not baked in.

SegNet's unpooling is the part exporters stumble on (pytorch #25088, #43367):
``F.max_unpool2d`` with dynamic sizes does not export. Ours is a
``scatter`` into a zero map (:mod:`segnet_domains.model.unpool`), which
becomes ONNX ``ConstantOfShape`` + ``ScatterElements``; the pooling indices
come from ``MaxPool``'s second output (rebased per plane by the exporter) and
the pre-pooling size from ``Shape``, so odd sizes round up and back exactly
as in PyTorch.

Exporters (``torch.onnx.export``), both tested:

* ``"torchscript"`` (default, opset 17): traces the model; about 9 s for
  SegNet(3, 12) on our loaded 2-core CPU, so ``--backend onnxruntime`` can
  export a ``.pt`` checkpoint on the fly. PyTorch marks it deprecated; the
  warning is silenced here because we choose it deliberately.
* ``"dynamo"`` (opset ≥ 18): ``torch.export`` + onnxscript; a leaner graph
  (150 nodes against 338 for the tiny model, though onnxruntime folds the
  shape arithmetic of both) but 70–80 s per export on the same machine.

Both give the same outputs under onnxruntime at any size (tests). The whole
checkpoint header (:class:`~segnet_domains.checkpoint.ModelInfo` as JSON) is
stored in ``metadata_props`` under ``segnet_domains``, plus readable
``class_names``, ``class_colors``, ``normalization``, ``pad_multiple`` and
``precision`` entries for tools that don't know us.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segnet_domains.checkpoint import HEADER_KEY, ModelInfo, load_checkpoint
from segnet_domains.errors import InputError
from segnet_domains.io.atomic import atomic_output

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}
MIN_OPSET = {"torchscript": 11, "dynamo": 18}
INPUT_NAME, OUTPUT_NAME = "image", "logits"


class _Fp16(nn.Module):
    """Run the network in fp16 behind float32 inputs and outputs (the graph's interface stays fp32)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half()).float()


def pad_multiple(model: nn.Module) -> int:
    """The network's total stride: inputs are padded to a multiple of it (``2 ** pooling stages``)."""
    return 2 ** len(model.encoder.stages)  # type: ignore[arg-type, union-attr]


def metadata_props(info: ModelInfo, multiple: int, fp16: bool, exporter: str) -> dict[str, str]:
    """The ``metadata_props`` of an exported model: the full header plus readable copies."""
    return {
        HEADER_KEY: json.dumps({"info": info.to_dict()}),
        "class_names": json.dumps(info.class_names),
        "class_colors": json.dumps(info.class_colors),
        "normalization": json.dumps(info.normalization),
        "in_channels": str(info.in_channels),
        "domain": str(info.domain),
        "pad_multiple": str(multiple),
        "precision": "fp16" if fp16 else "fp32",
        "exporter": exporter,
    }


def export_model_proto(
    model: nn.Module,
    info: ModelInfo,
    opset: int | None = None,
    fp16: bool = False,
    exporter: str = "torchscript",
) -> Any:
    """Export ``model`` to an ``onnx.ModelProto`` (checked) with dynamic batch, height and width.

    Args:
        model: a segnet-domains model (copied; BatchNorm is folded in the copy).
        info: its checkpoint header, stored in ``metadata_props``.
        opset: ONNX opset (default 17 for TorchScript, 18 for dynamo).
        fp16: compute in fp16 (for CUDA/TensorRT); inputs and outputs stay float32.
        exporter: ``"torchscript"`` or ``"dynamo"``.

    Raises:
        ValueError: unknown exporter or an opset it cannot write.
    """
    import onnx

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, not {exporter!r}")
    opset = DEFAULT_OPSET[exporter] if opset is None else int(opset)
    if opset < MIN_OPSET[exporter]:
        raise ValueError(f"the {exporter} exporter needs opset >= {MIN_OPSET[exporter]} (got {opset})")
    net = copy.deepcopy(getattr(model, "module", model)).float().cpu().eval()
    net.fuse_bn()
    multiple = pad_multiple(net)
    wrapped: nn.Module = _Fp16(net) if fp16 else net
    example = torch.zeros(2, info.in_channels, 2 * multiple, 3 * multiple)
    export = _export_dynamo if exporter == "dynamo" else _export_ts
    proto = export(wrapped, example, opset)
    proto.producer_name, proto.doc_string = "segnet-domains", _doc(info)
    del proto.metadata_props[:]
    for key, value in metadata_props(info, multiple, fp16, exporter).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _export_ts(net: nn.Module, example: torch.Tensor, opset: int) -> Any:
    import onnx

    axes = {0: "batch", 2: "height", 3: "width"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # chosen deliberately (module doc)
        torch.onnx.export(
            net,
            (example,),
            buf,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
            opset_version=opset,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def _export_dynamo(net: nn.Module, example: torch.Tensor, opset: int) -> Any:
    from torch.export import Dim

    dims = {0: Dim("batch"), 2: Dim("height"), 3: Dim("width")}
    program = torch.onnx.export(
        net,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=(dims,),
        opset_version=opset,
        optimize=True,
        verbose=False,
    )
    return program.model_proto


def _doc(info: ModelInfo) -> str:
    return (
        f"{info.architecture} {info.args} exported by segnet-domains. "
        f"Input '{INPUT_NAME}': N×{info.in_channels}×H×W float32 normalised as "
        f"{json.dumps(info.normalization)}, H and W padded (reflect) to a multiple of pad_multiple; "
        f"output '{OUTPUT_NAME}': N×{info.out_channels}×H×W class scores (softmax over axis 1). "
        f"Classes: {', '.join(info.class_names)}."
    )


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    opset: int | None = None,
    fp16: bool = False,
    exporter: str = "torchscript",
) -> Path:
    """Export a checkpoint to an ONNX file (atomically) that :class:`~segnet_domains.Segmenter` runs.

    Raises:
        InputError: unreadable checkpoint, output folder missing, an output
            that is the checkpoint itself, or an opset/exporter that cannot be used.
    """
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise InputError(out, "the output of export-onnx must end in .onnx")
    if out.exists() and out.resolve() == Path(checkpoint).resolve():
        raise InputError(out, "is the input checkpoint; choose another output")
    if not out.parent.is_dir():
        raise InputError(out, f"output folder {out.parent} does not exist")
    ckpt = load_checkpoint(checkpoint)
    try:
        proto = export_model_proto(ckpt.model, ckpt.info, opset, fp16, exporter)
    except ValueError as exc:
        raise InputError(checkpoint, str(exc)) from None
    with atomic_output(out) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return out
