"""``segnet-domains serve`` as a user starts it: a real process on 127.0.0.1, and its one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from segnet_domains.cli import main

pytest.importorskip("uvicorn", reason="the web extra is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_checkpoints_it_says_how_to_get_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--demo-dir", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: no checkpoints to serve: none in {tmp_path / 'nothing'}/models/ — run `make serve` "
        "(trains the demo models first), `make demo`, or pass --model CKPT\n"
    )


def test_a_bad_checkpoint_is_one_line_before_anything_listens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04junk")
    assert main(["serve", "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {bad}: carries a pickle payload")


def test_serve_process_answers_on_localhost_and_stops_on_ctrl_c(tiny_checkpoint, tmp_path: Path) -> None:
    demo = tmp_path / "demo_out" / "models" / "fundus"
    demo.mkdir(parents=True)
    tiny_checkpoint(3, 2, name="best.pt", domain="fundus").rename(demo / "best.pt")
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "segnet_domains", "serve", "--port", str(port), "--device", "cpu"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=5) as r:
                    models = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.2)
        assert [(m["name"], m["domain"], m["bands"]) for m in models] == [("fundus", "fundus", 3)]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            page = r.read().decode()
        assert '<script src="/static/app.js" defer></script>' in page
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"serving 1 model(s) (fundus) at http://127.0.0.1:{port}/" in out
