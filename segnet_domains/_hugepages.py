"""torch's large CPU buffers are backed by transparent huge pages: set on import, on purpose.

A network's activations are large buffers (the reduced SegNet 8…64 on eight
512² tiles: 67 MB per first-stage map; the paper's SegNet on one 360×480
frame: 45 MB). glibc serves each with a fresh ``mmap`` and unmaps it when it is
freed, so every forward pass touches hundreds of megabytes of new memory, and
the kernel takes a page fault and zero-fills a page at each first touch: with
4 KiB pages that pass of the reduced SegNet took 840–936 ms and 160k page
faults on a 2-core AMD EPYC (fp32, torch 2.13); asking for 2 MiB pages
(``THP_MEM_ALLOC_ENABLE=1``, which makes torch's CPU allocator ``madvise`` its
allocations of 2 MiB and more) took 506–572 ms and 8k faults.

Keeping freed buffers in the heap instead (glibc's ``mallopt`` thresholds)
was faster still on one thread (369–475 ms) but raised the tiler's peak memory
by 130–290 MB through fragmentation, and glibc's per-thread arenas (napari's
worker thread, Dask's task threads) cannot hold buffers above 64 MB, so huge
pages it is: they help every thread and cost less memory (peak 756–780 MB for
that pass, against 700 MB with 4 KiB pages and 796–876 MB with the heap).

This module sets the variable as a default (``os.environ.setdefault``: a
user's own ``THP_MEM_ALLOC_ENABLE=0`` wins); torch reads it at each
allocation, so it applies even where torch was imported first, and child
processes inherit it. It does nothing where the kernel's transparent huge
pages are ``never`` (:func:`huge_pages_enabled`).
"""

from __future__ import annotations

import os
from pathlib import Path

#: The variable and the value this package sets when the user has not.
HUGE_PAGES = ("THP_MEM_ALLOC_ENABLE", "1")
#: Where Linux says whether processes may ask for transparent huge pages.
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")

os.environ.setdefault(*HUGE_PAGES)


def huge_pages_enabled(mode_file: Path = THP_MODE) -> bool:
    """Whether torch's large CPU buffers get huge pages here (asked for, and the kernel's mode allows it)."""
    try:
        mode = mode_file.read_text()
    except OSError:  # not Linux, or no transparent huge pages in this kernel
        return False
    chosen = mode[mode.find("[") + 1 : mode.find("]")]
    return os.environ.get(HUGE_PAGES[0]) == HUGE_PAGES[1] and chosen in ("always", "madvise")
