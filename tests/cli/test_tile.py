"""``segnet-domains tile`` end to end: outputs, batch summary, resume, and every bad input of issue 4."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from segnet_domains.cli import main
from segnet_domains.synthetic.layouts import write_geotiff
from tests.data.geo import make_checkpoint, make_scene, truncate


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "aerial.pt")


def _tile(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["tile", *argv, "--device", "cpu", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def _leftovers(out: Path) -> list[str]:
    """Anything but a run summary: partial outputs, work folders, temporary names."""
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("tile-run-"))


def test_tile_writes_cogs_and_summary(tmp_path: Path, ckpt: Path, capsys) -> None:
    scenes = [make_scene(tmp_path / f"L8_{i}.tif", 150, 170, seed=i)[0] for i in range(2)]
    out = tmp_path / "out"
    argv = [str(tmp_path / "L8_*.tif"), "--model", str(ckpt), "--out-dir", str(out), "--tile", "128"]
    code, stdout, err = _tile([*argv, "--overlap", "32", "--proba", "--batch-size", "3"], capsys)
    assert code == 0, err
    assert "2 scene(s): 2 done" in stdout
    for s in scenes:
        with rasterio.open(out / f"{s.stem}_labels.tif") as dst, rasterio.open(s) as src:
            assert dst.shape == src.shape and dst.crs == src.crs and dst.transform == src.transform
            assert dst.dtypes[0] == "uint8" and dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert (out / f"{s.stem}_proba.tif").is_file()
    (summary,) = out.glob("tile-run-*.json")
    data = json.loads(summary.read_text())
    assert data["counts"] == {"done": 2} and data["options"]["tile_size"] == 128
    code, stdout, _ = _tile([*argv, "--overlap", "32", "--proba", "--batch-size", "3"], capsys)
    assert code == 0 and "2 skipped" in stdout


def test_one_broken_scene_gives_nonzero_exit_after_the_others(tmp_path: Path, ckpt: Path, capsys) -> None:
    good, _ = make_scene(tmp_path / "good.tif", 140, 140)
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not a raster")
    out = tmp_path / "out"
    code, stdout, err = _tile([str(bad), str(good), "-m", str(ckpt), "-o", str(out), "--tile", "128"], capsys)
    assert code != 0
    assert err.strip() == f"error: {bad}: not a raster GDAL can read"
    assert "1 done, 1 failed" in stdout and (out / "good_labels.tif").is_file()


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    full, _ = make_scene(tmp / "full.tif", 600, 600, border=False)
    txt = tmp / "readme.tif"
    txt.write_text("hello")
    anon = write_geotiff(tmp / "fourband.tif", np.ones((4, 200, 200), np.uint16))
    one = write_geotiff(tmp / "one.tif", np.ones((1, 1), np.uint16), nodata=None)
    return {
        "not a raster": (txt, "not a raster GDAL can read"),
        "truncated": (truncate(full, tmp / "cut.tif", 0.3), "corrupt"),
        "band count": (anon, "scene has 4 band(s) but the checkpoint expects 3 (blue, green, red)"),
        "1x1": (one, "1×1 pixel"),
    }


@pytest.mark.parametrize("case", ["not a raster", "truncated", "band count", "1x1"])
def test_bad_scene_one_line_nonzero_nothing_partial(tmp_path: Path, ckpt: Path, capsys, case: str) -> None:
    path, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out"
    code, _, err = _tile([str(path), "--model", str(ckpt), "--out-dir", str(out), "--tile", "128"], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}") and message in lines[0], err
    assert "Traceback" not in err
    assert _leftovers(out) == []


def test_scene_smaller_than_a_tile_gets_a_smaller_tile(tmp_path: Path, ckpt: Path, capsys) -> None:
    """Issue 11: a 100×300 scene with 128-pixel tiles is tiled with 96-pixel ones (a multiple of 32)."""
    small, _ = make_scene(tmp_path / "small.tif", 100, 300)
    out = tmp_path / "out"
    argv = [str(small), "--model", str(ckpt), "--out-dir", str(out), "--tile", "128"]
    with pytest.warns(UserWarning, match="smaller than one 128-pixel tile; using 96-pixel tiles"):
        code, _, err = _tile(argv, capsys)
    assert code == 0, err
    with rasterio.open(out / "small_labels.tif") as dst:
        assert dst.shape == (100, 300) and dst.tags()["SEGNET_TILE"] == "96"


def test_unwritable_output_folder(tmp_path: Path, ckpt: Path, capsys) -> None:
    scene, _ = make_scene(tmp_path / "s.tif", 130, 130)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = _tile([str(scene), "--model", str(ckpt), "--out-dir", str(blocker / "out")], capsys)
    assert code == 2 and err.strip().startswith(f"error: {blocker / 'out'}: cannot create the output folder")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        code, _, err = _tile([str(scene), "--model", str(ckpt), "--out-dir", str(ro)], capsys)
        assert code == 2 and "not writable" in err


def test_bad_options(tmp_path: Path, ckpt: Path, capsys) -> None:
    scene, _ = make_scene(tmp_path / "s.tif", 130, 130)
    base = [str(scene), "--model", str(ckpt), "--out-dir", str(tmp_path / "o"), "--tile", "128"]
    code, _, err = _tile([*base, "--uncertainty", "--samples", "2"], capsys)  # ckpt has dropout: fine
    assert code == 0, err
    plain = make_checkpoint(tmp_path / "plain.pt", dropout=0.0)
    code, _, err = _tile([*base, "--model", str(plain), "--uncertainty"], capsys)
    assert (
        code == 2
        and err.strip()
        == f"error: {plain}: --uncertainty needs a checkpoint trained with dropout (Bayesian SegNet)"
    )
    code, _, err = _tile([*base, "--overlap", "128"], capsys)
    assert code == 2 and err.strip() == "error: --overlap must be in [0, 128) for 128-pixel tiles (got 128)"
    code, _, err = _tile([*base, "--model", str(tmp_path / "missing.pt")], capsys)
    assert code == 2 and "missing.pt" in err
    with pytest.raises(SystemExit):
        main(["tile", *base, "--bands", "0,1"])


def test_console_script_runs(tmp_path: Path, ckpt: Path) -> None:
    """The installed command, in a fresh process (as a user runs it)."""
    scene, _ = make_scene(tmp_path / "s.tif", 130, 140)
    exe = Path(sys.executable).with_name("segnet-domains")
    cmd = [str(exe), "tile", str(scene), "-m", str(ckpt), "-o", str(tmp_path / "o"), "--tile", "128"]
    proc = subprocess.run([*cmd, "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "s_labels.tif").is_file()


@pytest.fixture
def dask_cluster(tmp_path: Path):
    """An existing cluster, as a user starts one: ``dask scheduler`` and ``dask worker`` processes."""
    pytest.importorskip("dask.distributed")
    exe = Path(sys.executable).with_name("dask")
    info = tmp_path / "scheduler.json"
    procs = [
        subprocess.Popen(
            [str(exe), "scheduler", "--scheduler-file", str(info), "--port", "0", "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    try:
        for _ in range(300):
            if info.is_file() and info.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        worker = [str(exe), "worker", "--scheduler-file", str(info), "--nworkers", "2", "--nthreads", "1"]
        procs.append(
            subprocess.Popen(
                [*worker, "--no-dashboard", "--memory-limit", "4GB"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: the nanny's worker processes go with it
            )
        )
        from dask.distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


def test_scheduler_address_runs_on_an_existing_cluster(tmp_path: Path, ckpt: Path, dask_cluster: str) -> None:
    """``--scheduler tcp://HOST:PORT``: a separately started cluster writes what one process writes."""
    scenes = [make_scene(tmp_path / f"c{i}.tif", 100 + 20 * i, 120, seed=i)[0] for i in range(3)]
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a raster")
    exe = Path(sys.executable).with_name("segnet-domains")
    common = ["-m", str(ckpt), "--tile", "64", "--overlap", "16", "--device", "cpu", "--no-progress"]
    args = [str(exe), "tile", *map(str, scenes), str(broken), *common]
    single = subprocess.run([*args, "-o", str(tmp_path / "one")], capture_output=True, text=True, timeout=300)
    dist = subprocess.run(
        [*args, "-o", str(tmp_path / "cluster"), "--scheduler", dask_cluster],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == dist.returncode == 1, dist.stderr  # the broken scene, after the others
    assert "broken.tif" in dist.stderr and "Traceback" not in dist.stderr
    summary = json.loads(next((tmp_path / "cluster").glob("tile-run-*.json")).read_text())
    assert summary["counts"] == {"done": 3, "failed": 1}
    for s in scenes:
        name = f"{s.stem}_labels.tif"
        with rasterio.open(tmp_path / "one" / name) as a, rasterio.open(tmp_path / "cluster" / name) as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.profile == b.profile and a.crs == b.crs
    assert _leftovers(tmp_path / "cluster") == sorted(f"{s.stem}_labels.tif" for s in scenes)


def test_unreachable_scheduler_is_one_line(tmp_path: Path, ckpt: Path, capsys) -> None:
    scene, _ = make_scene(tmp_path / "s.tif", 70, 70)
    argv = [str(scene), "-m", str(ckpt), "-o", str(tmp_path / "o"), "--tile", "64", "--scheduler"]
    code, _, err = _tile([*argv, "tcp://127.0.0.1:9"], capsys)
    assert code != 0 and "cannot reach the Dask scheduler tcp://127.0.0.1:9" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = _tile([*argv, "tcp://no-such-host.invalid:8786"], capsys)
    assert code != 0 and "cannot reach the Dask scheduler tcp://no-such-host.invalid:8786" in err
