"""Hostile inputs for ``tile``: outputs over inputs, scene lists, numbers, locks, other settings."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import rasterio

from segnet_domains.io.safety import LOCK_NAME, folder_lock
from tests.data.geo import make_scene
from tests.hostile.conftest import Assets, Table, check_case, fifo, run_main, scene

FAST = ["--device", "cpu", "--no-progress"]
SUMMARY = ("out", "out/tile-run-*.json")  # a run with a broken scene still writes its summary
PARTIAL = ("out/tile-run-*.json",)
TILE, TILE_OK = Table(), Table()


def _tile(
    w: Path, a: Assets, *extra: str, scenes: tuple[str, ...] = ("s.tif",), out: str = "out"
) -> list[str]:
    paths = []
    for name in scenes:
        p = w / name
        if not p.exists() and not p.is_symlink() and name.endswith(".tif"):
            scene(p)
        paths.append(str(p))
    return ["tile", *paths, "--model", str(a.ckpt3), "--out-dir", str(w / out), *FAST, *extra]


def _text(path: Path, text: str = "hello") -> Path:
    path.write_text(text)
    return path


def _list(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _progress(w: Path, settings: dict | None) -> None:
    """Work left by an interrupted run with ``settings`` (its progress file names them)."""
    work = _dir(w / "out" / ".s.tiling")
    record = {"key": "0" * 20, "settings": settings, "tile_rows_done": 1}
    (work / "progress.json").write_text(json.dumps(record))


# ----------------------------------------------------------------------------- outputs


@TILE.case()
def scene_is_another_scenes_output(w, a):
    scene(w / "s_labels.tif")
    return _tile(w, a, scenes=("s.tif", "s_labels.tif"), out="."), ["s_labels.tif", "is also an input"]


@TILE.case()
def summary_is_scene(w, a):
    return _tile(w, a, "--summary", str(w / "s.tif")), ["s.tif", "is also an input"]


@TILE.case()
def summary_tif(w, a):
    return _tile(w, a, "--summary", str(w / "run.tif")), ["run.tif", "use .json"]


@TILE.case()
def summary_is_list(w, a):
    _list(w / "l.txt", "s.tif")
    return _tile(w, a, "--summary", str(w / "l.txt"), scenes=("l.txt",)), ["l.txt", "is also an input"]


@TILE.case()
def summary_is_checkpoint(w, a):
    (w / "m.json").write_bytes(a.ckpt3.read_bytes())
    argv = _tile(w, a, "--model", str(w / "m.json"), "--summary", str(w / "m.json"), "--force")
    return argv, ["m.json", "is also an input"]


@TILE.case()
def summary_missing_folder(w, a):
    return _tile(w, a, "--summary", str(w / "nope" / "s.json")), ["s.json", "does not exist"]


@TILE.case()
def summary_is_folder(w, a):
    return _tile(w, a, "--summary", str(_dir(w / "s.json"))), ["s.json", "is a folder"]


@TILE.case()
def summary_exists(w, a):
    return _tile(w, a, "--summary", str(_text(w / "s.json", '{"scenes": []}'))), ["s.json", "--force"]


@TILE.case()
def summary_foreign_force(w, a):
    argv = _tile(w, a, "--summary", str(_text(w / "s.json", '{"mine": 1}')), "--force")
    return argv, ["s.json", "not a run summary"]


@TILE.case()
def summary_fifo(w, a):
    return _tile(w, a, "--summary", str(fifo(w / "s.json")), "--force"), ["s.json", "FIFO"]


@TILE.case()
def summary_is_an_output(w, a):
    return _tile(w, a, "--summary", str(w / "out" / "s_labels.tif")), ["s_labels.tif", "use .json"]


@TILE.case()
def foreign_file_at_output_name(w, a):
    _text(_dir(w / "out") / "s_labels.tif")
    return _tile(w, a), ["s_labels.tif", "not a tiling output"]


@TILE.case()
def foreign_file_at_output_name_force(w, a):
    _text(_dir(w / "out") / "s_labels.tif")
    return _tile(w, a, "--force"), ["s_labels.tif", "not a tiling output"]


@TILE.case()
def folder_at_output_name(w, a):
    _dir(w / "out" / "s_labels.tif")
    return _tile(w, a), ["s_labels.tif", "is a folder"]


@TILE.case()
def foreign_proba_name(w, a):
    _text(_dir(w / "out") / "s_proba.tif")
    return _tile(w, a, "--proba"), ["s_proba.tif", "not a tiling output"]


@TILE.case()
def out_dir_is_file(w, a):
    _text(w / "o")
    return _tile(w, a, out="o"), ["o", "not a folder"]


@TILE.case()
def out_dir_under_a_file(w, a):
    _text(w / "f")
    return _tile(w, a, out="f/o"), ["cannot create the output folder"]


@TILE.case()
def out_dir_fifo(w, a):
    fifo(w / "o")
    return _tile(w, a, out="o"), ["FIFO"]


@TILE.case()
def out_dir_is_the_scene(w, a):
    return _tile(w, a, out="s.tif"), ["s.tif"]


# ----------------------------------------------------------------------------- scene lists


@TILE.case()
def list_names_itself(w, a):
    _list(w / "self.txt", "self.txt")
    return _tile(w, a, scenes=("self.txt",)), ["self.txt", "cycle"]


@TILE.case()
def lists_in_a_cycle(w, a):
    _list(w / "a.txt", "b.txt")
    _list(w / "b.txt", "s.tif", "a.txt")
    return _tile(w, a, scenes=("a.txt",)), ["a.txt", "cycle (a.txt → b.txt → a.txt)"]


@TILE.case()
def list_binary(w, a):
    (w / "bin.txt").write_bytes(b"\x00\xff\xfe" * 50)
    return _tile(w, a, scenes=("bin.txt",)), ["bin.txt", "not a text file"]


@TILE.case()
def list_latin1(w, a):
    (w / "l1.txt").write_bytes("sc\xe8ne.tif\n".encode("latin-1"))
    return _tile(w, a, scenes=("l1.txt",)), ["l1.txt", "not a text file"]


@TILE.case()
def list_empty(w, a):
    _list(w / "e.txt", "# nothing")
    return _tile(w, a, scenes=("e.txt",)), ["no scenes"]


@TILE.case()
def list_fifo(w, a):
    fifo(w / "f.txt")
    return _tile(w, a, scenes=("f.txt",)), ["f.txt", "FIFO"]


# ----------------------------------------------------------------------------- broken scenes (others go on)


@TILE.case(code=1, creates=SUMMARY)
def scene_fifo(w, a):
    fifo(w / "p.tif")
    return _tile(w, a, scenes=("p.tif",)), ["p.tif", "FIFO"]


@TILE.case(code=1, creates=SUMMARY)
def scene_folder(w, a):
    _dir(w / "d.tif")
    return _tile(w, a, scenes=("d.tif",)), ["d.tif", "is a folder"]


@TILE.case(code=1, creates=SUMMARY)
def scene_device(w, a):
    return ["tile", "/dev/zero", "-m", str(a.ckpt3), "-o", str(w / "out"), *FAST], ["/dev/zero", "device"]


@TILE.case(code=1, creates=SUMMARY)
def scene_missing(w, a):
    return ["tile", str(w / "gone.tif"), "-m", str(a.ckpt3), "-o", str(w / "out"), *FAST], [
        "gone.tif",
        "not found",
    ]


@TILE.case(code=1, creates=SUMMARY)
def glob_matches_nothing(w, a):
    return ["tile", str(w / "*.jp2"), "-m", str(a.ckpt3), "-o", str(w / "out"), *FAST], [
        "*.jp2",
        "no file matches",
    ]


@TILE.case(code=1, creates=SUMMARY)
def scene_text(w, a):
    _text(w / "t.tif")
    return _tile(w, a, scenes=("t.tif",)), ["t.tif", "not a raster"]


# ----------------------------------------------------------------------------- numbers


@TILE.case()
def tile_0(w, a):
    return _tile(w, a, "--tile", "0"), ["--tile", "[2, 8192]"]


@TILE.case()
def tile_negative(w, a):
    return _tile(w, a, "--tile", "-64"), ["--tile"]


@TILE.case()
def tile_huge(w, a):
    return _tile(w, a, "--tile", "1000000"), ["--tile", "8192"]


@TILE.case()
def tile_text(w, a):
    return _tile(w, a, "--tile", "big"), ["--tile"]


@TILE.case()
def overlap_negative(w, a):
    return _tile(w, a, "--overlap", "-1"), ["--overlap"]


@TILE.case()
def overlap_equals_tile(w, a):
    return _tile(w, a, "--tile", "64", "--overlap", "64"), ["--overlap must be in [0, 64)"]


@TILE.case()
def samples_0(w, a):
    return _tile(w, a, "--uncertainty", "--samples", "0"), ["--samples", "[1, 1000]"]


@TILE.case()
def samples_negative(w, a):
    return _tile(w, a, "--samples", "-2"), ["--samples"]


@TILE.case()
def batch_size_0(w, a):
    return _tile(w, a, "--batch-size", "0"), ["--batch-size"]


@TILE.case()
def batch_size_negative(w, a):
    return _tile(w, a, "--batch-size", "-8"), ["--batch-size"]


@TILE.case()
def workers_0(w, a):
    return _tile(w, a, "--workers", "0"), ["--workers"]


@TILE.case()
def workers_and_scheduler(w, a):
    return _tile(w, a, "--workers", "2", "--scheduler", "tcp://x:1"), ["--scheduler"]


@TILE.case()
def bands_zero(w, a):
    return _tile(w, a, "--bands", "0,1,2"), ["bands"]


@TILE.case()
def bands_text(w, a):
    return _tile(w, a, "--bands", "red"), ["bands"]


@TILE.case()
def nodata_text(w, a):
    return _tile(w, a, "--nodata", "none"), ["--nodata"]


# ----------------------------------------------------------------------------- one run per folder, resume


@TILE.case()
def locked_by_a_live_run(w, a):
    return _tile(w, a), ["out", "in use by another tile run", "pid"]


@TILE.case(code=1, creates=PARTIAL)
def interrupted_with_other_tile(w, a):
    _progress(w, {"tile": 32, "overlap": 8})
    return _tile(w, a, "--tile", "64", "--overlap", "16"), ["s.tif", "other settings", "tile 32 → 64"]


@TILE.case(code=1, creates=PARTIAL)
def interrupted_settings_unrecorded(w, a):
    _progress(w, None)
    return _tile(w, a), ["s.tif", "settings not recorded"]


# ----------------------------------------------------------------------------- what must work


@TILE_OK.case(code=0, creates=("out",), warns="using 64-pixel tiles")
def scene_smaller_than_tile(w, a):
    return _tile(w, a, "--tile", "512"), []


@TILE_OK.case(code=0, creates=("out",), warns="using 20-pixel tiles")
def scene_thinner_than_32(w, a):
    make_scene(w / "thin.tif", 20, 90, border=False)
    return _tile(w, a, scenes=("thin.tif",)), []


@TILE_OK.case(code=0, creates=("out",))
def stale_lock_after_a_crash(w, a):
    _text(_dir(w / "out") / LOCK_NAME, json.dumps({"pid": 999999, "host": "gone"}))
    return _tile(w, a), []


@TILE_OK.case(code=0, creates=("out",))
def interrupted_other_settings_force(w, a):
    _progress(w, {"tile": 32})
    return _tile(w, a, "--force"), []


@TILE_OK.case(code=0, creates=("out",))
def out_dir_with_other_files(w, a):
    _text(_dir(w / "out") / "notes.md")
    return _tile(w, a), []


@pytest.mark.parametrize("case", TILE, ids=TILE.ids)
def test_tile(case, tmp_path: Path, assets: Assets, capsys: pytest.CaptureFixture[str]) -> None:
    if case.name == "locked-by-a-live-run":
        (tmp_path / "out").mkdir()
        with folder_lock(tmp_path / "out", "tile"):
            err = check_case(case, tmp_path, assets, capsys)
        assert f"pid {os.getpid()} on {socket.gethostname()}" in err
        return
    check_case(case, tmp_path, assets, capsys)


@pytest.mark.parametrize("case", TILE_OK, ids=TILE_OK.ids)
def test_tile_succeeds(case, tmp_path: Path, assets: Assets, capsys: pytest.CaptureFixture[str]) -> None:
    check_case(case, tmp_path, assets, capsys)
    out = tmp_path / "out"
    assert not (out / LOCK_NAME).exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tiling")]
    (labels,) = [p for p in out.iterdir() if p.name.endswith("_labels.tif")]
    with rasterio.open(labels) as dst:
        assert dst.read(1).max() < 4


def test_finished_output_with_other_settings(tmp_path: Path, assets: Assets, capsys) -> None:
    """A finished map made with other settings is never replaced silently; --force replaces it."""
    argv = _tile(tmp_path, assets, "--tile", "64", "--overlap", "16")
    code, _, err = run_main(argv, capsys)
    assert code == 0, err
    first = (tmp_path / "out" / "s_labels.tif").read_bytes()
    other = [*argv, "--tile", "32", "--overlap", "8"]
    code, _, err = run_main(other, capsys)
    assert code == 1 and "other settings (tile 64 → 32, overlap 16 → 8)" in err and "Traceback" not in err
    assert (tmp_path / "out" / "s_labels.tif").read_bytes() == first
    code, _, err = run_main([*other, "--force"], capsys)
    assert code == 0, err
    with rasterio.open(tmp_path / "out" / "s_labels.tif") as dst:
        assert dst.tags()["SEGNET_TILE"] == "32"


def test_scene_smaller_than_tile_matches_the_explicit_tile(tmp_path: Path, assets: Assets, capsys) -> None:
    """The tile chosen for a small scene gives the same map as asking for that tile."""
    for out, tile in (("auto", "512"), ("explicit", "64")):
        code, _, err = run_main(_tile(tmp_path, assets, "--tile", tile, "--overlap", "16", out=out), capsys)
        assert code == 0, err
    with rasterio.open(tmp_path / "auto" / "s_labels.tif") as a:
        auto = a.read(1)
    with rasterio.open(tmp_path / "explicit" / "s_labels.tif") as b:
        np.testing.assert_array_equal(auto, b.read(1))
