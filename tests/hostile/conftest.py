"""The hostile-input battery's assets and harness (issue 11).

Every case runs ``segnet_domains.cli.main`` in this process (fast), in a
fresh folder, and the harness asserts what the issue promises for a bad
input: the exit code, no traceback, exactly one ``error:`` line naming the
file and the problem, no file created, changed or removed in the case's
folder, and the shared inputs (checkpoints, configs, datasets) byte-identical
afterwards. Cases that must succeed (``--force`` on a file of ours, a scene
smaller than one tile) declare the outputs they may create.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import subprocess
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import torch

from segnet_domains import SegNet, save_checkpoint
from segnet_domains.cli import main
from segnet_domains.synthetic.layouts import rite_miniature
from tests.data.geo import make_checkpoint, make_scene

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "pipelines" / "configs"
TINY = (4, 8)  # two stages: a model that builds and runs in milliseconds


@dataclass(frozen=True)
class Assets:
    """Files shared by every case (read-only for them: the harness checks they never change)."""

    root: Path
    ckpt1: Path  # 1 band → 2 classes (images, volumes)
    ckpt3: Path  # 3 bands → 4 classes with dropout (tile, RGB)
    rite: Path  # a tiny RITE dataset (train)
    config: Path  # pipelines/configs/rite_vessels.yaml


@dataclass
class Case:
    """One hostile input.

    Attributes:
        name: the test id.
        build: ``build(work folder, assets) → (argv, expected texts in the error line)``.
        code: expected exit status.
        creates: names (relative to the work folder) a successful case may create or change.
        warns: a text the warnings on stderr must contain (success cases).
    """

    name: str
    build: Callable[[Path, Assets], tuple[list[str], list[str]]]
    code: int = 2
    creates: tuple[str, ...] = ()
    warns: str | None = None


class Table(list):
    """A table of :class:`Case` filled by decorating builder functions.

    Example::

        IMAGE = Table()

        @IMAGE.case(code=2)
        def out_is_input(w, a):
            return _img(w, a, "--out", str(w / "in.png")), ["in.png", "is also an input"]
    """

    def case(
        self, code: int = 2, creates: tuple[str, ...] = (), warns: str | None = None
    ) -> Callable[[Callable[[Path, Assets], tuple[list[str], list[str]]]], Callable]:
        def register(build: Callable[[Path, Assets], tuple[list[str], list[str]]]) -> Callable:
            self.append(Case(build.__name__.replace("_", "-"), build, code, creates, warns))
            return build

        return register

    @property
    def ids(self) -> list[str]:
        return [c.name for c in self]


def snapshot(folder: Path) -> dict[str, str]:
    """``relative path → kind:digest`` of everything under ``folder`` (FIFOs and links by kind only)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                out[rel] = f"link:{os.readlink(p)}"
            elif p.is_dir():
                out[rel] = "dir"
            elif p.is_file():
                out[rel] = "file:" + hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "special"
    return out


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(argv)`` → ``(exit status, stdout, stderr)``; argparse's exits count as statuses."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def check_case(case: Case, work: Path, assets: Assets, capsys: pytest.CaptureFixture[str]) -> str:
    """Run one case and assert the battery's promises; returns stderr."""
    argv, expect = case.build(work, assets)
    shared, before = snapshot(assets.root), snapshot(work)
    with warnings.catch_warnings(record=True) as caught:  # the CLI prints them as "warning: …" lines
        warnings.simplefilter("always")
        code, _, err = run_main(argv, capsys)
    warned = "\n".join(str(w.message) for w in caught)
    assert "Traceback" not in err, err
    assert code == case.code, f"exit {code}, wanted {case.code}: {err}"
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error:")]
    if case.code:  # 2: refused; 1: tile's broken scene, reported while the run goes on
        assert len(errors) == 1 and len(lines) == 1, f"not one error line: {err!r}"
        for text in expect:
            assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    else:
        assert not errors, err
    if case.warns:
        assert case.warns in warned, warned
    after = snapshot(work)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    allowed = {
        c for c in changed if any(fnmatch.fnmatch(c, p) or c.startswith(p + "/") for p in case.creates)
    }
    assert changed == allowed, f"files created/changed/removed: {sorted(changed - allowed)}"
    assert snapshot(assets.root) == shared, "a shared input changed"
    return err


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    root = tmp_path_factory.mktemp("hostile_assets")
    torch.manual_seed(0)
    ckpt1 = save_checkpoint(
        root / "m1.pt", SegNet(1, 2, features=TINY, depths=(1, 1)), class_names=["background", "lesion"]
    )
    ckpt3 = make_checkpoint(root / "m3.pt", tile_size=64, tile_overlap=16)
    rite = rite_miniature(root / "rite", train=1, test=1, size=(40, 44))
    config = root / "rite.yaml"
    config.write_bytes((CONFIGS / "rite_vessels.yaml").read_bytes())
    return Assets(root=root, ckpt1=ckpt1, ckpt3=ckpt3, rite=rite, config=config)


# --------------------------------------------------------------------------- file makers


def png(path: Path, shape: tuple[int, ...] = (40, 44), value: int = 90) -> Path:
    rng = np.random.default_rng(0)
    iio.imwrite(path, rng.integers(0, 255, shape, dtype=np.uint8) // 2 + value // 2)
    return path


def nifti(path: Path, shape: tuple[int, ...] = (12, 14, 10), affine: np.ndarray | None = None) -> Path:
    data = np.random.default_rng(0).normal(100, 10, shape).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine)
    img.header.set_qform(img.affine, code=1)
    img.header.set_sform(img.affine, code=1)
    nib.save(img, path)
    return path


def scene(path: Path, size: int = 70) -> Path:
    return make_scene(path, size, size + 6, border=False)[0]


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def rewrite_header(src: Path, dst: Path, mutate: Callable[[dict], None]) -> Path:
    """Copy a checkpoint with its JSON header changed by ``mutate(info)`` (the weights untouched)."""
    raw = src.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["segnet_domains"])
    mutate(meta["info"])
    header["__metadata__"]["segnet_domains"] = json.dumps(meta)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    dst.write_bytes(len(new).to_bytes(8, "little") + new + raw[8 + n :])
    return dst


@pytest.fixture(scope="session")
def read_only_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder on a real read-only file system (a tmpfs mounted ``ro``); skipped where mounting fails."""
    mnt = tmp_path_factory.mktemp("ro")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], capture_output=True, check=False
    )
    if proc.returncode != 0:
        pytest.skip("cannot mount a read-only file system here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
