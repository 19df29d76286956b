"""glibc keeps freed buffers of up to 64 MiB for reuse: set on import, on purpose.

Inference allocates the same large buffers over and over: each forward pass's
activations, the probabilities of each frame or batch (12 classes of a 360×480
frame: 8.3 MB of float32; the tiler's batch of eight 512² tiles, 4 classes:
34 MB). glibc serves buffers above its ``mmap`` threshold (128 KiB, raised
after each free up to 32 MiB) with a fresh ``mmap``, and trims the heap's top
once more than twice that threshold lies free there, so a buffer freed at the
end of one call is given back to the kernel, and the next call faults in new,
zero-filled pages. On a virtual machine a first touch is expensive: on the
2-core AMD EPYC this package is measured on (a Firecracker VM), torch filled
64 MiB of fresh memory at 0.5–0.7 GB/s, the same buffer again at 20–23 GB/s.

``mallopt`` fixes both thresholds here: buffers below :data:`MMAP_THRESHOLD`
come from the heap, and the heap keeps up to :data:`TRIM_THRESHOLD` free at its
top, so a loop of calls reuses its memory (the fixed values also switch off
glibc's sliding threshold). Fresh processes, four rounds in alternation with
``SEGNET_MALLOC=glibc`` (torch 2.13, 2-core AMD EPYC Zen 4, bf16; medians):

* ``predict_proba`` of a 360×480 frame in a loop, SegNet 8…64: 30.7 → 24.4 ms
  (the page faults of a call: about 500 → 0);
* ``tile`` of a 4096² uint16 scene, SegNet 8…64: 5.10 → 4.57 s (faster in all
  four rounds);
* ``predict_volume`` of 197×233×189: 1.22 → 1.13 s (this machine's noise is as large);
* the processes' peak RSS 1011–1049 → 1083–1123 MB; the tiler's peak RSS
  2048² → 8192² (``bench_tile.py``, the issue's settings) grew 1.041× → 1.054×
  and 0.965× (two runs) quiet, 1.026× → 1.053× and 1.082× beside a busy
  process: 60–180 MB more at both sizes, the growth within issue #16's 1.10×.

It is what PyTorch's CPU performance guides get from jemalloc or tcmalloc
(``LD_PRELOAD``), which keep freed memory too, without a second allocator.
The settings apply to every glibc arena, so napari's and Dask's worker threads
reuse their buffers as the main thread does (a thread's arena heap holds at
most 64 MiB; larger buffers are mapped afresh there).

Nothing is changed where the user chose: any ``MALLOC_*_`` variable or
``glibc.malloc`` tunable in ``GLIBC_TUNABLES``, another allocator in
``LD_PRELOAD``, or ``SEGNET_MALLOC=glibc`` (glibc's own behaviour). Not glibc
(macOS, Windows, musl): nothing to do. :func:`malloc_tuned` says whether it
applies.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Mapping

#: Buffers below this come from the heap (glibc's default slides from 128 KiB up to 32 MiB).
MMAP_THRESHOLD = 64 << 20
#: Free memory the heap keeps at its top before giving it back (glibc: twice the sliding threshold).
TRIM_THRESHOLD = 128 << 20
#: ``mallopt`` parameters (``malloc.h``).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: The opt-out: ``SEGNET_MALLOC=glibc`` leaves glibc's defaults.
OPT_OUT = ("SEGNET_MALLOC", "glibc")
#: Allocators that replace glibc's malloc when preloaded.
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def user_chose(environ: Mapping[str, str]) -> bool:
    """Whether the environment already sets how this process allocates (then it is left alone)."""
    return (
        environ.get(OPT_OUT[0]) == OPT_OUT[1]
        or any(k.startswith("MALLOC_") and k.endswith("_") for k in environ)
        or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")
        or any(name in environ.get("LD_PRELOAD", "") for name in OTHER_ALLOCATORS)
    )


def is_glibc() -> bool:
    """Whether this process's C library is glibc on Linux (where ``mallopt`` has these thresholds)."""
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _tune() -> bool:
    """Set the thresholds unless the user chose or this is not glibc; whether they were set."""
    if not is_glibc() or user_chose(os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


_tuned = _tune()


def malloc_tuned() -> bool:
    """Whether this process's glibc keeps freed buffers (the thresholds above were set on import)."""
    return _tuned
