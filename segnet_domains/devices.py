"""Device and precision choice: CUDA, then MPS, then CPU; the fastest safe precision for each."""

from __future__ import annotations

import functools

import torch


def available_devices() -> list[str]:
    """Devices usable here, best first: ``cuda:0`` …, ``mps``, ``cpu``."""
    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return [*devices, "cpu"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` (or an explicit name) into a usable :class:`torch.device`.

    Raises:
        ValueError: the named device does not exist on this machine.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device(available_devices()[0])
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps "
            f"(here: {', '.join(available_devices())})"
        ) from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    if dev.type == "mps" and "mps" not in available_devices():
        raise ValueError("device 'mps' requested but MPS is not available here")
    return dev


@functools.cache
def cpu_has_bf16() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The compute dtype for ``device``: fp16/bf16 on CUDA, bf16 on a bf16 CPU, fp32 elsewhere.

    Args:
        device: where inference runs.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    """
    names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision != "auto":
        if precision not in names:
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {precision!r}")
        return names[precision]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return torch.float32
