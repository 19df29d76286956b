"""Web demo latency under load: 16 concurrent clients posting a 512×512 image to ``segnet-domains serve``.

Starts the real server (``python -m segnet_domains serve`` in its own process,
on a free port of 127.0.0.1) with a reduced SegNet (``--features``, default
8,16,32,64,64; 3 bands, 2 classes), then ``--clients`` threads each post the
same 512×512 RGB PNG ``--requests`` times to ``POST /api/predict`` and time
each answer (upload, queueing behind the model's lock, inference, PNG mask
back). Every mask is checked (shape 512×512).

Baselines in the same run: the same job in this process without HTTP
(``predict_image_file``, the function the server calls), and one client
alone against the server. With one model the server runs one request at a
time (a lock per model), so under 16 clients the median latency is about
16 × the single-request time: the figure shows queueing, not overhead.

Usage::

    python benchmarks/bench_serve.py [--device cpu|cuda|auto] [--clients 16] [--requests 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import add_common_args, pick_device

from segnet_domains import Segmenter, SegNet, save_checkpoint
from segnet_domains.predict_files import predict_image_file

SIZE = 512


def _post(url: str, data: bytes) -> tuple[float, bytes]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="frame.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        out = r.read()
    return time.perf_counter() - t, out


def _pctl(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q))


def _start(ckpt: Path, port: int, device: str = "cpu") -> subprocess.Popen:
    argv = ["serve", "--model", str(ckpt), "--port", str(port), "--device", device]
    log = (ckpt.parent / "server.log").open("w")  # never a pipe nobody reads: a full pipe blocks the server
    proc = subprocess.Popen([sys.executable, "-m", "segnet_domains", *argv], stdout=log, stderr=log)
    deadline = time.monotonic() + 600  # importing torch on a loaded machine can take minutes
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=5).read()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"server did not start: {(ckpt.parent / 'server.log').read_text()}"
                ) from None
            time.sleep(0.2)


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=3, help="requests per client")
    ap.add_argument("--features", default="8,16,32,64,64")
    ap.add_argument("--json", help="also write the figures to this file")
    add_common_args(ap)
    args = ap.parse_args()
    device = str(pick_device(args.device))
    features = [int(f) for f in args.features.split(",")]

    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp / "bench.pt", SegNet(3, 2, features=features), domain="fundus")
    rgb = np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    png = tmp / "frame.png"
    iio.imwrite(png, rgb)
    data = png.read_bytes()

    seg = Segmenter.from_checkpoint(ckpt, device=device)
    predict_image_file(seg, png, tmp / "warm.png")
    direct = []
    for _ in range(5):
        t = time.perf_counter()
        predict_image_file(seg, png, tmp / "direct.png")
        direct.append(time.perf_counter() - t)
    del seg

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _start(ckpt, port, device)
    url = f"http://127.0.0.1:{port}/api/predict"
    try:
        _post(url, data)  # warm-up
        single = [_post(url, data)[0] for _ in range(5)]
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            for _ in range(args.requests):
                try:
                    dt, body = _post(url, data)
                    assert iio.imread(body).shape == (SIZE, SIZE)
                    with lock:
                        latencies.append(dt)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    with lock:
                        errors.append(repr(exc))

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl+C, as a user stops it
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    res = {
        "image": [SIZE, SIZE, 3],
        "features": features,
        "device": device,
        "clients": args.clients,
        "requests": len(latencies),
        "errors": len(errors),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "direct_s_median": round(statistics.median(direct), 4),
        "single_client_s_median": round(statistics.median(single), 4),
        "latency_s_median": round(statistics.median(latencies), 3) if latencies else None,
        "latency_s_p95": round(_pctl(latencies, 95), 3) if latencies else None,
        "latency_s_max": round(max(latencies), 3) if latencies else None,
        "throughput_per_s": round(len(latencies) / wall, 2),
        "http_overhead_ratio": round(statistics.median(single) / statistics.median(direct), 3),
    }
    print(f"serve: {SIZE}x{SIZE} RGB PNG, SegNet features={features}, {args.clients} concurrent clients × "
          f"{args.requests} requests ({res['cpus']} CPUs)")  # fmt: skip
    print(f"  direct predict_image_file  {res['direct_s_median'] * 1000:8.1f} ms (median of 5)")
    print(f"  one client over HTTP       {res['single_client_s_median'] * 1000:8.1f} ms "
          f"(×{res['http_overhead_ratio']:.2f} of direct)")  # fmt: skip
    print(f"  {args.clients} clients: median {res['latency_s_median']} s, p95 {res['latency_s_p95']} s, "
          f"max {res['latency_s_max']} s, {res['throughput_per_s']} req/s, {len(errors)} errors")  # fmt: skip
    if errors:
        print("  first error:", errors[0])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
