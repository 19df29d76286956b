"""Device and precision choice: CUDA, then MPS, then CPU; the faster precision for each, by measuring.

``precision="auto"`` is decided by a short timed probe (:func:`probe_precision`):
a small conv net in fp32 and in the device's low precision (bf16, or fp16 on
a GPU without bf16), run the way the real path runs it, cached per process,
device and mode (inference or training). The environment variable
``SEGNET_DOMAINS_PRECISION`` overrides it.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from segnet_domains.runtime import configure_threads


def available_devices() -> list[str]:
    """Devices usable here, best first: ``cuda:0`` …, ``mps``, ``cpu``."""
    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return [*devices, "cpu"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` (or an explicit name) into a usable :class:`torch.device`.

    Also sizes torch's CPU threads to the cores this process may use
    (:func:`~segnet_domains.runtime.configure_threads`; a user's own choice is kept).

    Raises:
        ValueError: the named device does not exist on this machine.
    """
    configure_threads()  # every model run resolves its device first: size torch's threads to this process
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


#: Set to ``fp32``, ``bf16`` or ``fp16`` to override what ``precision="auto"`` picks (no probe is run).
PRECISION_ENV = "SEGNET_DOMAINS_PRECISION"
#: The low precision must be at least this much faster than fp32 to be picked (noise margin; fp32 is safer).
PROBE_MARGIN = 0.9
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: A timing function: ``(device, low dtype, mode) -> (fp32 seconds, low seconds)`` (injectable for tests).
ProbeTimer = Callable[[torch.device, torch.dtype, str], tuple[float, float]]


@dataclass(frozen=True)
class ProbeResult:
    """One timed probe: fp32 against the device's low precision, and the choice."""

    device: str
    mode: str
    candidate: torch.dtype
    fp32_s: float
    low_s: float

    @property
    def dtype(self) -> torch.dtype:
        """The low precision when it is clearly faster (:data:`PROBE_MARGIN`), else fp32."""
        return self.candidate if self.low_s < PROBE_MARGIN * self.fp32_s else torch.float32


_PROBES: dict[tuple[str, str], ProbeResult] = {}


#: ``(batch, channels, side)`` of the probe per device type. A GPU needs a stack big enough to be bound by
#: arithmetic, not by kernel launches: at 32 channels × 32² an H200 ran fp32 and bf16 at the same speed
#: (launch-bound) and the probe chose fp32, though SegNet itself runs about twice as fast in bf16 there.
PROBE_SIZES = {"cuda": (8, 256, 128)}
_PROBE_DEFAULT = (1, 32, 32)


def _probe_net(dtype: torch.dtype, device: torch.device, mode: str) -> tuple[nn.Module, torch.Tensor]:
    """A SegNet-like stack (conv-BN-ReLU ×2; :data:`PROBE_SIZES`) and its input, as the real path runs."""
    batch, ch, side = PROBE_SIZES.get(device.type, _PROBE_DEFAULT)
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(),
        nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(),
    )  # fmt: skip
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    x = torch.randn(batch, ch, side, side, generator=gen, requires_grad=False)
    net, x = net.to(device), x.to(device)
    if device.type in ("cpu", "cuda"):
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    if mode == "inference" and device.type == "cpu" and dtype != torch.float32:
        net, x = net.to(dtype), x.to(dtype)  # the CPU inference path: weights and activations in bf16
    return (net.train() if mode == "train" else net.eval()), x


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _run_probe(net: nn.Module, x: torch.Tensor, device: torch.device, dtype: torch.dtype, mode: str) -> float:
    """Seconds of one synchronised pass (inference: forward; train: forward + backward)."""
    autocast = (device.type != "cpu" or mode == "train") and dtype != torch.float32
    _sync(device)
    t = time.perf_counter()
    with torch.autocast(device.type, dtype=dtype, enabled=autocast):
        if mode == "train":
            net(x).float().square().mean().backward()
        else:
            with torch.inference_mode():
                net(x)
    _sync(device)
    return time.perf_counter() - t


def time_probe(device: torch.device, low: torch.dtype, mode: str, repeats: int = 5) -> tuple[float, float]:
    """``(fp32, low)`` seconds of one probe pass: the fastest of ``repeats``, fp32 and low alternating.

    The minimum, not the median, and alternation: on a machine shared with other
    jobs, load from other processes inflates some passes of both alike; the
    least-disturbed pass of each is what the hardware does. On a CPU the probe
    runs on one thread: what differs between fp32 and bf16 is the kernels
    (native bf16 or emulated), and a team of threads on a loaded machine
    measures the scheduler instead (2 threads at load 6 on 2 cores: 95 ms a
    pass that takes 1.5 ms on one thread).
    """
    threads = torch.get_num_threads()
    if device.type == "cpu":  # one core: the kernels' speed, not how the scheduler treats a team of threads
        torch.set_num_threads(1)
    try:
        nets = {dtype: _probe_net(dtype, device, mode) for dtype in (torch.float32, low)}
        for dtype, (net, x) in nets.items():  # warm-up: kernel selection, allocator
            _run_probe(net, x, device, dtype, mode)
        times: dict[torch.dtype, list[float]] = {dtype: [] for dtype in nets}
        for _ in range(repeats):
            for dtype, (net, x) in nets.items():
                times[dtype].append(_run_probe(net, x, device, dtype, mode))
    finally:
        torch.set_num_threads(threads)
    return min(times[torch.float32]), min(times[low])


def _candidate(device: torch.device, mode: str) -> torch.dtype | None:
    """The low precision worth probing on ``device`` (training: bf16 only; fp16 would need loss scaling)."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None if mode == "train" else torch.float16
    if device.type == "cpu":
        return torch.bfloat16
    return None  # MPS and others: fp32


def probe_precision(
    device: torch.device, mode: str = "inference", timer: ProbeTimer | None = None
) -> ProbeResult | None:
    """Time fp32 against the device's low precision on a small conv net; cached per process, device and mode.

    A few milliseconds on a GPU or a CPU with native bf16; tens where bf16 is
    emulated (and loses). ``None`` where there is nothing to compare (MPS).

    Args:
        device: the device the model runs on.
        mode: ``"inference"`` (the Segmenter's path) or ``"train"`` (autocast forward + backward).
        timer: ``(device, low dtype, mode) -> (fp32 s, low s)``; the default runs :func:`time_probe`.
    """
    key = (str(device), mode)
    if key in _PROBES:
        return _PROBES[key]
    low = _candidate(device, mode)
    if low is None:
        return None
    timer = timer or time_probe
    fp32_s, low_s = timer(device, low, mode)
    _PROBES[key] = ProbeResult(str(device), mode, low, fp32_s, low_s)
    return _PROBES[key]


def resolve_precision(
    device: torch.device, precision: str = "auto", mode: str = "inference", timer: ProbeTimer | None = None
) -> torch.dtype:
    """The compute dtype for ``device``: an explicit one, or for ``"auto"`` what is faster here.

    ``"auto"`` takes :data:`PRECISION_ENV` when set, else the outcome of
    :func:`probe_precision` (never an instruction-set flag alone: emulated
    bf16 on an AVX2 CPU is slower than fp32, native bf16 on AMX much faster).

    Args:
        device: where the model runs.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        mode: ``"inference"`` or ``"train"`` (training offers fp32 and bf16 only).
        timer: injected probe timing (tests).

    Raises:
        ValueError: an unknown precision.
    """
    if precision == "auto":
        precision = os.environ.get(PRECISION_ENV, "").strip().lower() or "auto"
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {precision!r}")
        return PRECISIONS[precision]
    result = probe_precision(device, mode, timer)
    return torch.float32 if result is None else result.dtype


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``; host memory bound for a GPU is pinned first and copied without blocking.

    The copy is queued on the device's current stream, so work queued after it
    sees the data; the host thread goes on preparing the next batch meanwhile.
    On the CPU (or when ``x`` is already there) ``x`` itself is returned.
    """
    if x.device == device or (device.type == "cpu" and x.device.type == "cpu"):
        return x
    if device.type == "cuda" and x.device.type == "cpu" and not x.is_pinned():
        x = x.pin_memory()
    return x.to(device, non_blocking=device.type == "cuda")


def read_only_tensor(values: Any, device: torch.device | str = "cpu") -> torch.Tensor:
    """``values`` (an array, a tensor) as a tensor on ``device``, not copied where it can be: to be read only.

    A read-only numpy array (a napari layer's data, a memory map) is taken as
    is: torch warns that writing to it would be undefined, which does not
    apply to a tensor that is only read, so that warning is silenced here. A
    view with negative strides (a flipped image), which torch cannot take,
    is copied once.
    """
    if isinstance(values, np.ndarray) and any(stride < 0 for stride in values.strides):
        values = np.ascontiguousarray(values)
    if isinstance(values, torch.Tensor) or (isinstance(values, np.ndarray) and values.flags.writeable):
        return torch.as_tensor(values, device=device)  # nothing to silence: catching warnings costs 10 µs
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
        return torch.as_tensor(values, device=device)


#: numpy dtypes torch has no tensors for (:func:`pixels_tensor` widens them to float64).
TORCH_LACKS = frozenset(np.dtype(t) for t in (np.uint32, np.uint64))


def pixels_tensor(array: np.ndarray) -> torch.Tensor:
    """A numeric array as a CPU tensor to read, without a copy where torch can take it as is.

    Non-native byte order (some NIfTI/FITS files) is swapped; dtypes torch
    does not compute with (``uint32``, ``uint64``) become float64; otherwise
    as :func:`read_only_tensor` (read-only arrays as they are, flipped views
    copied).
    """
    array = np.asarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype in TORCH_LACKS:
        array = array.astype(np.float64)
    return read_only_tensor(array)


def to_host(x: torch.Tensor) -> torch.Tensor:
    """``x`` in contiguous host memory: a GPU result lands in pinned memory by a non-blocking copy.

    Waits for that copy (the caller reads the result next); a CPU tensor is
    returned as is (no copy; call ``.contiguous()`` if its layout matters).
    """
    if x.device.type == "cpu":
        return x
    out = torch.empty(x.shape, dtype=x.dtype, pin_memory=x.device.type == "cuda")
    out.copy_(x, non_blocking=x.device.type == "cuda")
    if x.device.type == "cuda":
        torch.cuda.current_stream(x.device).synchronize()
    return out
