"""What runs the network inside :class:`~segnet_domains.inference.Segmenter`: PyTorch or onnxruntime.

A backend maps a normalised, padded ``N×C×H×W`` float32 batch to class scores
``N×K×H×W``; nothing else. Normalisation, padding to the stride, flips,
softmax, cropping, batching and Monte Carlo averaging stay in the Segmenter,
so both backends get the same pre- and post-processing.

* :class:`TorchBackend` — the model itself: BatchNorm folded (on the CPU,
  ReLU too, as a oneDNN post-op), channels-last, bf16 on CPUs with native
  bf16, autocast on CUDA.
* :class:`OnnxBackend` — an ONNX export (:mod:`segnet_domains.onnx_export`)
  in an ``onnxruntime.InferenceSession``: TensorRT and CUDA execution
  providers where onnxruntime has them, else the CPU one. Dropout is folded
  to identity in the export, so Monte Carlo dropout is refused.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from segnet_domains.checkpoint import ModelInfo
from segnet_domains.devices import resolve_device, resolve_precision

BACKENDS = ("torch", "onnxruntime")


class Backend(Protocol):
    """The part of the inference path that runs the network."""

    name: str
    device: torch.device
    dtype: torch.dtype
    input_dtype: torch.dtype  # what the network takes: inputs are padded straight into it
    multiple: int  # inputs are padded to a multiple of this (the network's total stride)

    @property
    def can_sample_dropout(self) -> bool:
        """True when :meth:`__call__` can keep dropout active (Monte Carlo dropout)."""
        ...

    def __call__(self, x: torch.Tensor, mc_dropout: bool = False) -> torch.Tensor:
        """Class scores for a padded float batch (returned on any device, any float dtype).

        A batch already in :attr:`input_dtype`, on the device, is not converted.
        """
        ...

    def digest(self, h: Any) -> None:
        """Feed what the results depend on (the weights) into the hashlib object ``h``."""
        ...


class TorchBackend:
    """The PyTorch model on its device, in the fastest safe precision (see ``Segmenter``).

    Args:
        model: a segnet-domains model (copied; the caller's is not modified).
        device: ``"auto"``, ``"cpu"``, ``"cuda:1"`` …
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        precision: str = "auto",
        compile: bool | str = False,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_precision(self.device, precision)
        #: The input's dtype: the weights' on the CPU, float32 elsewhere (CUDA casts under autocast).
        self.input_dtype = self.dtype if self.device.type == "cpu" else torch.float32
        net = copy.deepcopy(getattr(model, "module", model)).eval()
        net.fuse_bn()
        net = net.to(self.device)
        if self.device.type in ("cpu", "cuda"):
            net = net.to(memory_format=torch.channels_last)
        if self.device.type == "cpu" and self.dtype != torch.float32:
            net = net.to(self.dtype)
        if self.device.type == "cpu":
            net.fuse_relu()
        self.model = net
        self.multiple = 2 ** len(net.encoder.stages)
        #: The ``torch.compile``\ d network (``None``: eager; also after compilation failed here).
        self.compiled: Callable[[torch.Tensor], torch.Tensor] | None = (
            compile_model(net, self.device, "inductor" if compile is True else compile) if compile else None
        )

    @property
    def can_sample_dropout(self) -> bool:
        return getattr(self.model, "dropout", None) is not None

    def __call__(self, x: torch.Tensor, mc_dropout: bool = False) -> torch.Tensor:
        x = x.to(self.device, dtype=self.input_dtype)
        if self.device.type in ("cpu", "cuda"):
            x = x.contiguous(memory_format=torch.channels_last)
        autocast: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.device.type == "cuda" and self.dtype != torch.float32:
            autocast = torch.autocast("cuda", dtype=self.dtype)
        sampling = mc_dropout and self.can_sample_dropout
        if sampling:
            self.model.enable_mc_dropout(True)
        try:
            with autocast:
                if self.compiled is not None and not sampling:  # dropout sampling runs eager: no recompile
                    try:
                        return self.compiled(x)
                    except compile_errors() as exc:  # compilation happens at the first call of a shape
                        compile_failed(exc)
                        self.compiled = None
                return self.model(x)
        finally:
            if sampling:
                self.model.enable_mc_dropout(False)

    def digest(self, h: Any) -> None:
        for name, t in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())


def compile_errors() -> tuple[type[BaseException], ...]:
    """What a failed ``torch.compile`` raises (at the call, or at the first run of the compiled model).

    Imported when needed: Dynamo and inductor are heavy, and only a compiled model uses them.
    """
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import InductorError

    return TorchDynamoException, InductorError, OSError, ImportError


def compile_model(
    net: nn.Module, device: torch.device, backend: str = "inductor"
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``torch.compile(net)`` for inference, or ``None`` (with :func:`compile_failed`'s warning).

    On the CPU inductor *freezes* the weights into the graph (constant
    folding; oneDNN convolutions with their bias and ReLU fused). Compilation
    itself happens lazily, at the first batch of each shape: a failure then
    is caught by the caller (:class:`TorchBackend`), which runs eager from
    there on.
    """
    options = {"freezing": True} if device.type == "cpu" and backend == "inductor" else None
    try:
        return torch.compile(net, backend=backend, options=options)
    except (RuntimeError, *compile_errors()) as exc:  # unknown backend, or no Dynamo on this Python
        compile_failed(exc)
        return None


def compile_failed(exc: BaseException) -> None:
    """The one-line warning of a compilation that could not be done: the model runs eager."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    warnings.warn(
        f"torch.compile failed ({type(exc).__name__}: {first}); running the model eager",
        RuntimeWarning,
        stacklevel=4,
    )


def onnx_providers(device: str | torch.device, available: list[str]) -> tuple[list[Any], torch.device]:
    """onnxruntime execution providers for ``device``, best first, and the device results land on.

    ``"auto"`` takes TensorRT and CUDA when this onnxruntime build has them,
    else the CPU; ``"cuda:N"`` asks for them on GPU N; ``"cpu"`` only the CPU.

    Raises:
        ValueError: CUDA asked for but this onnxruntime has no CUDA provider;
            a device onnxruntime cannot use (``mps``).
    """
    name = str(device)
    if name == "auto":
        gpu = "CUDAExecutionProvider" in available
        name = "cuda:0" if gpu else "cpu"
    dev = torch.device(name)
    if dev.type == "cpu":
        return ["CPUExecutionProvider"], dev
    if dev.type != "cuda":
        raise ValueError(f"the onnxruntime backend runs on cpu or cuda, not {name!r}")
    if "CUDAExecutionProvider" not in available:
        raise ValueError(
            f"device {name!r} requested but this onnxruntime has no CUDA execution provider "
            "(install onnxruntime-gpu)"
        )
    index = dev.index or 0
    options = {"device_id": index}
    providers: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        providers.append(("TensorrtExecutionProvider", dict(options)))
    providers += [("CUDAExecutionProvider", dict(options)), "CPUExecutionProvider"]
    return providers, torch.device("cuda", index)


class OnnxBackend:
    """An exported SegNet in an onnxruntime session.

    Args:
        model: an ``.onnx`` file written by ``export-onnx``, or the model's bytes.
        device: ``"auto"`` (TensorRT/CUDA where present, else CPU), ``"cpu"``, ``"cuda:N"``.
        precision: ``"auto"`` (the file's), or ``"fp32"``/``"fp16"`` when it matches the file
            (an fp16 graph comes from ``export-onnx --fp16``).
        threads: intra-op threads (default: PyTorch's, so both backends use the same cores).

    Raises:
        ValueError: onnxruntime missing, a device it cannot use, a precision the
            file was not exported in.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model: str | Path | bytes,
        device: str | torch.device = "auto",
        precision: str = "auto",
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ValueError(
                "the onnxruntime backend needs onnxruntime: pip install 'segnet-domains[onnx]'"
            ) from None
        providers, self.device = onnx_providers(device, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            model if isinstance(model, bytes) else str(model), opts, providers=providers
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        file_precision = meta.get("precision", "fp32")
        if precision not in ("auto", file_precision):
            raise ValueError(
                f"this ONNX model was exported in {file_precision}; precision {precision!r} needs a "
                f"re-export ({'--fp16' if precision == 'fp16' else 'without --fp16'})"
            )
        self.dtype = torch.float16 if file_precision == "fp16" else torch.float32
        self.input_dtype = torch.float32  # the graph's input, whatever its precision inside
        self.multiple = int(meta.get("pad_multiple", 32))
        self.input_name = self.session.get_inputs()[0].name
        # what the results depend on, for resumable tiling: the model's bytes (hashed now, not kept)
        self._path = None if isinstance(model, bytes) else Path(model)
        self._digest = hashlib.sha256(model).digest() if isinstance(model, bytes) else None

    @classmethod
    def from_module(
        cls, model: nn.Module, info: ModelInfo, device: str | torch.device = "auto", precision: str = "auto"
    ) -> OnnxBackend:
        """Export ``model`` in memory (TorchScript exporter) and run it in onnxruntime."""
        from segnet_domains.onnx_export import export_model_proto

        if precision not in ("auto", "fp32", "fp16"):
            raise ValueError(f"the onnxruntime backend runs fp32 or fp16, not {precision!r}")
        proto = export_model_proto(model, info, fp16=precision == "fp16")
        return cls(proto.SerializeToString(), device=device)

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on, best first."""
        return list(self.session.get_providers())

    @property
    def can_sample_dropout(self) -> bool:
        return False

    def __call__(self, x: torch.Tensor, mc_dropout: bool = False) -> torch.Tensor:
        if mc_dropout:
            raise ValueError("the onnxruntime backend cannot sample dropout")
        feed = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run(None, {self.input_name: feed})
        return torch.from_numpy(logits)

    def digest(self, h: Any) -> None:
        if self._digest is None:
            assert self._path is not None
            self._digest = hashlib.sha256(self._path.read_bytes()).digest()
        h.update(self._digest)
