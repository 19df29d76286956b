"""``precision="auto"`` is decided by a timed probe: cached, deterministic given the timings, overridable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segnet_domains import devices
from segnet_domains.devices import PRECISION_ENV, ProbeResult, probe_precision, resolve_precision, time_probe
from segnet_domains.training.engine import training_dtype

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_probe_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_PROBES", {})
    monkeypatch.delenv(PRECISION_ENV, raising=False)


class Timings:
    """An injected probe timer: fixed (fp32, low) seconds, counting its calls."""

    def __init__(self, fp32_s: float, low_s: float) -> None:
        self.result, self.calls = (fp32_s, low_s), []

    def __call__(self, device: torch.device, low: torch.dtype, mode: str) -> tuple[float, float]:
        self.calls.append((str(device), low, mode))
        return self.result


@pytest.mark.parametrize(
    ("fp32_s", "low_s", "expected"),
    [
        (0.010, 0.004, torch.bfloat16),  # native bf16 (AMX): clearly faster
        (0.002, 0.015, torch.float32),  # emulated bf16 (AVX2 only): slower
        (0.010, 0.0095, torch.float32),  # within the noise margin: fp32, the safer one
        (0.010, 0.0089, torch.bfloat16),  # just past the margin
    ],
)
def test_auto_follows_the_timings(fp32_s: float, low_s: float, expected: torch.dtype) -> None:
    timer = Timings(fp32_s, low_s)
    assert resolve_precision(CPU, "auto", timer=timer) == expected
    assert timer.calls == [("cpu", torch.bfloat16, "inference")]
    devices._PROBES.clear()
    assert resolve_precision(CPU, "auto", timer=Timings(fp32_s, low_s)) == expected  # deterministic


def test_probe_is_cached_per_device_and_mode() -> None:
    timer = Timings(0.002, 0.015)
    first = probe_precision(CPU, "inference", timer)
    assert probe_precision(CPU, "inference", timer) is first
    assert resolve_precision(CPU, "auto", timer=timer) == torch.float32
    assert len(timer.calls) == 1
    faster = Timings(0.010, 0.002)
    assert resolve_precision(CPU, "auto", mode="train", timer=faster) == torch.bfloat16  # its own probe
    assert faster.calls == [("cpu", torch.bfloat16, "train")]
    assert isinstance(devices._PROBES[("cpu", "train")], ProbeResult)


def test_explicit_precision_and_environment_skip_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    timer = Timings(0.010, 0.001)
    assert resolve_precision(CPU, "fp32", timer=timer) == torch.float32
    assert resolve_precision(CPU, "bf16", timer=timer) == torch.bfloat16
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    assert resolve_precision(CPU, "auto", timer=timer) == torch.float32
    assert timer.calls == []
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision(CPU, "fp8")


def test_training_auto_uses_the_train_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        devices._PROBES, ("cpu", "train"), ProbeResult("cpu", "train", torch.bfloat16, 0.01, 0.002)
    )
    assert training_dtype(CPU, "auto") == torch.bfloat16
    monkeypatch.setitem(
        devices._PROBES, ("cpu", "train"), ProbeResult("cpu", "train", torch.bfloat16, 0.002, 0.01)
    )
    assert training_dtype(CPU, "auto") == torch.float32
    assert training_dtype(CPU, "fp32") == torch.float32


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_real_probe_times_both_precisions(mode: str) -> None:
    """The probe runs here (which one wins depends on the CPU: not asserted) and restores the threads."""
    threads = torch.get_num_threads()
    fp32_s, low_s = time_probe(CPU, torch.bfloat16, mode, repeats=2)
    assert 0 < fp32_s < 5 and 0 < low_s < 5
    assert torch.get_num_threads() == threads


def test_host_and_device_copies_are_free_on_the_cpu() -> None:
    """to_device/to_host on the CPU hand back the tensor itself (no copy, no pinning)."""
    from segnet_domains.devices import to_device, to_host

    x = torch.arange(6.0).reshape(2, 3)
    assert to_device(x, torch.device("cpu")) is x
    assert to_host(x) is x


def test_read_only_arrays_are_read_without_a_copy_or_a_warning() -> None:
    """A read-only array (a napari layer's data, a memory map) is read in place, silently."""
    import warnings

    from segnet_domains.devices import read_only_tensor
    from segnet_domains.inference import labels_from_proba

    proba = np.random.default_rng(0).random((3, 7, 9)).astype(np.float32)
    proba.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = read_only_tensor(proba)
        labels = labels_from_proba(proba)
    assert t.data_ptr() == proba.ctypes.data  # no copy
    np.testing.assert_array_equal(labels, proba.argmax(0))
    assert labels.dtype == np.uint8


def test_flipped_byte_swapped_and_wide_pixels_become_tensors() -> None:
    """``pixels_tensor``: a flipped view is copied once (torch takes no negative strides), big-endian is
    swapped, uint32 widened to float64; the values stay; and an image given so segments as its copy does."""
    from segnet_domains import Segmenter, SegNet
    from segnet_domains.devices import pixels_tensor

    img = np.random.default_rng(1).integers(0, 4000, (20, 24, 3)).astype(np.uint16)
    for arr in (img[::-1, ::-1], img.astype(">u2"), img.astype(np.uint32)):
        t = pixels_tensor(arr)
        np.testing.assert_array_equal(t.numpy(), np.asarray(arr, np.float64))
    assert pixels_tensor(img.astype(np.uint32)).dtype == torch.float64
    plain = pixels_tensor(img)
    assert plain.dtype == torch.uint16 and plain.data_ptr() == img.ctypes.data  # as is: no copy

    torch.manual_seed(0)
    seg = Segmenter(SegNet(3, 2, features=[8, 16, 32, 64, 64]).eval(), device="cpu")
    frame = img.astype(np.uint8)
    np.testing.assert_array_equal(seg.predict(frame[::-1]), seg.predict(np.ascontiguousarray(frame[::-1])))
