"""``import segnet_domains`` makes idle OpenMP threads sleep (unless the user chose) before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Loads ``_openmp.py`` alone (not the package, which imports torch) and prints the variable and its effect.
PROBE = (
    "import importlib.util as u, os; s = u.spec_from_file_location('o', {path!r}); "
    "o = u.module_from_spec(s); s.loader.exec_module(o); "
    "print(os.environ.get('OMP_WAIT_POLICY'), o.passive_waiting())"
).format(path=str(Path(__file__).parents[1] / "segnet_domains" / "_openmp.py"))


def _run(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=base | env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_the_package_sets_passive_waiting_before_torch_loads() -> None:
    code = "import os, segnet_domains._openmp as o; print(os.environ['OMP_WAIT_POLICY'], o.passive_waiting())"
    assert _run(code) == "PASSIVE True"


@pytest.mark.parametrize("policy", ["ACTIVE", "passive"])  # any case, as libgomp reads it
def test_a_users_own_policy_wins(policy: str) -> None:
    assert _run(PROBE, OMP_WAIT_POLICY=policy) == f"{policy} {policy.upper() == 'PASSIVE'}"


def test_too_late_when_torch_was_imported_first() -> None:
    """torch loaded OpenMP with its default: the variable is set for child processes, not in force here."""
    assert _run("import torch; " + PROBE) == "PASSIVE False"
