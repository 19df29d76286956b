"""The path-safety module's API, as a new front end (web server, ONNX export, DICOM output) calls it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segnet_domains.errors import InputError
from segnet_domains.io.atomic import atomic_output
from segnet_domains.io.safety import (
    LOCK_NAME,
    FileOutput,
    FolderOutput,
    check_claimed_size,
    check_input,
    check_number,
    check_outputs,
    file_kind,
    folder_lock,
    holds_only,
    lock_owner,
    output_format,
)


def test_plain_paths_are_file_outputs(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(b"x")
    assert check_outputs([src], [tmp_path / "o.png"]) == [tmp_path / "o.png"]
    with pytest.raises(InputError, match="is also an input"):
        check_outputs([src, None], [tmp_path / "o.png", src])
    with pytest.raises(InputError, match="name the same file"):
        check_outputs(
            [], [tmp_path / "a.png", FileOutput(tmp_path / "x" / ".." / "a.png", option="--overlay")]
        )


def test_force_replaces_only_our_kind(tmp_path: Path) -> None:
    out = tmp_path / "o.onnx"
    out.write_bytes(b"\x08\x07onnx")
    spec = FileOutput(out, "ONNX model", "OUT", (".onnx",), ours=lambda p: p.read_bytes()[:1] == b"\x08")
    with pytest.raises(InputError, match=r"exists; add --force"):
        check_outputs([], [spec])
    check_outputs([], [spec], force=True)
    out.write_text("my notes")
    with pytest.raises(InputError, match="is not an ONNX model; --force replaces only an ONNX model"):
        check_outputs([], [spec], force=True)


def test_folder_outputs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text("{}")  # a crash's leftovers do not make a folder non-empty
    (run / ".best.pt.partial.pt").write_bytes(b"")
    check_outputs([], [FolderOutput(run, "training run", exists="force", ours=holds_only(["*.pt"]))])
    (run / "best.pt").write_bytes(b"")
    with pytest.raises(InputError, match="holds an earlier training run; add --force"):
        check_outputs([], [FolderOutput(run, "training run", exists="force", ours=holds_only(["*.pt"]))])
    (run / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a training run"):
        check_outputs([], [FolderOutput(run, "training run", ours=holds_only(["*.pt"]))], force=True)


def test_kinds_are_named_without_opening(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p")
    assert file_kind(tmp_path / "p") == "is a named pipe (FIFO), not a regular file"
    assert file_kind("/dev/null") == "is a device, not a regular file"
    assert file_kind(tmp_path) == "is a folder, not a file"
    assert file_kind(tmp_path / "none") == "not found"
    with pytest.raises(InputError, match="image not found"):
        check_input(tmp_path / "none", "image")


def test_output_format() -> None:
    assert output_format("a/B.NII.GZ") == ".nii.gz" and output_format("x.tif") == ".tif"
    assert output_format("labels") == ""


def test_claimed_size() -> None:
    with pytest.raises(InputError, match=r"truncated: the header claims 10×10 \(.* KB\) but the file holds"):
        check_claimed_size(__file__, 100 + os.path.getsize(__file__), description="10×10", offset=0)
    check_claimed_size(__file__, 100, description="ok")
    with pytest.raises(InputError, match="more than a"):
        check_claimed_size(__file__, 10**13, description="a lot", compression="deflate")


@pytest.mark.parametrize("value", [0, -1, 5000, 1.5, float("nan"), True])
def test_check_number(value: float) -> None:
    with pytest.raises(InputError, match=r"--batch-size must be an integer in \[1, 4096\]"):
        check_number("--batch-size", value, 1, 4096)


def test_lock_is_exclusive_and_taken_over_after_a_crash(tmp_path: Path) -> None:
    with folder_lock(tmp_path, "tile"):
        owner = lock_owner(tmp_path)
        assert owner is not None and owner["pid"] == os.getpid() and owner["command"] == "tile"
        probe = "import sys\nfrom segnet_domains.io import safety\n"
        probe += "with safety.folder_lock(sys.argv[1], 'x'): pass"
        proc = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True)
        assert proc.returncode != 0 and f"in use by another tile run (pid {os.getpid()}" in proc.stderr
    assert not (tmp_path / LOCK_NAME).exists()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "dead"}))  # left by a kill -9
    with folder_lock(tmp_path, "train"):
        assert lock_owner(tmp_path)["command"] == "train"


def test_atomic_output_never_writes_a_file_over_a_folder(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_text("mine")
    with pytest.raises(InputError, match="is a folder"), atomic_output(tmp_path / "d") as tmp:
        tmp.write_text("x")
    assert (tmp_path / "d" / "keep").read_text() == "mine"
