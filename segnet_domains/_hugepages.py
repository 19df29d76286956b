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

Huge pages make a fresh buffer cheaper; :mod:`segnet_domains._malloc` makes
glibc keep freed buffers of up to 64 MiB, so that a loop of calls needs few
fresh ones. Both apply: larger buffers (the paper's SegNet on a batch of
tiles) are still mapped afresh, on huge pages. (Keeping every buffer in the
heap, whatever its size, was faster still for that pass on one thread,
369–475 ms, but raised the tiler's peak memory by 130–290 MB.)

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
