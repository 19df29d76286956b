"""``import segnet_domains`` asks for huge pages for torch's large CPU buffers (unless the user chose)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from segnet_domains._hugepages import HUGE_PAGES, THP_MODE, huge_pages_enabled

#: Loads ``_hugepages.py`` alone, then has torch allocate and fill 64 MiB three times; prints the variable,
#: whether huge pages apply, and the page faults per buffer.
PROBE = (
    "import importlib.util as u, os, resource, torch; "
    "s = u.spec_from_file_location('h', {path!r}); h = u.module_from_spec(s); s.loader.exec_module(h); "
    "r = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt; f = r(); "
    "[torch.empty(64 << 20, dtype=torch.uint8).fill_(1) for _ in range(3)]; "
    "print(os.environ.get('THP_MEM_ALLOC_ENABLE'), h.huge_pages_enabled(), (r() - f) // 3)"
).format(path=str(Path(__file__).parents[1] / "segnet_domains" / "_hugepages.py"))


def _probe(**env: str) -> tuple[str, bool, int]:
    base = {k: v for k, v in os.environ.items() if k != HUGE_PAGES[0]}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=base | env, capture_output=True, text=True, check=True
    )
    value, enabled, faults = out.stdout.split()
    return value, enabled == "True", int(faults)


@pytest.mark.skipif(not huge_pages_enabled(), reason="this kernel gives no transparent huge pages")
def test_torch_buffers_fault_in_huge_pages_unless_the_user_says_no() -> None:
    """64 MiB is 16384 pages of 4 KiB, or 32 of 2 MiB: each first touch of a page is a fault."""
    value, enabled, faults = _probe()
    assert (value, enabled) == ("1", True)
    assert faults < 2000, faults
    value, enabled, faults = _probe(THP_MEM_ALLOC_ENABLE="0")  # the user's own setting wins
    assert (value, enabled) == ("0", False)
    assert faults > 8000, faults


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("always [madvise] never", True), ("[always] madvise never", True), ("always madvise [never]", False)],
)
def test_huge_pages_follow_the_kernels_mode(tmp_path: Path, mode: str, expected: bool) -> None:
    (tmp_path / "enabled").write_text(mode + "\n")
    assert huge_pages_enabled(tmp_path / "enabled") is (expected and os.environ.get(HUGE_PAGES[0]) == "1")
    assert huge_pages_enabled(tmp_path / "missing") is False
    assert THP_MODE.name == "enabled"
