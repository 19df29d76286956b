"""A real uvicorn server on 127.0.0.1 in a thread, certain-output checkpoints, and a plain HTTP client.

The checkpoints are SegNets whose classifier has zero weights and a bias that
makes one class win by a margin of 20 logits everywhere: their masks are
known exactly whatever the input, so the tests check IO, geometry and the
server, not a model's quality.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import torch
import uvicorn

from segnet_domains import SegNet, save_checkpoint
from segnet_domains.web.app import create_app
from segnet_domains.web.models import ModelRegistry


def constant_checkpoint(
    path: Path, winner: int, classes: int = 2, in_channels: int = 1, dropout: float = 0.0, **metadata: Any
) -> Path:
    """A tiny SegNet that labels every pixel ``winner``."""
    torch.manual_seed(0)
    model = SegNet(in_channels, classes, features=(4, 8, 8, 8, 8), dropout=dropout)
    with torch.no_grad():
        model.decoder.classifier.weight.zero_()
        model.decoder.classifier.bias.fill_(-10.0)
        model.decoder.classifier.bias[winner] = 10.0
    return save_checkpoint(path, model, **metadata)


class LiveServer:
    """``uvicorn.Server`` serving :func:`create_app` on a free port of 127.0.0.1, in a daemon thread."""

    def __init__(self, checkpoints: list[Path], **app_kwargs: Any) -> None:
        self.registry = ModelRegistry.from_checkpoints(checkpoints, device="cpu")
        self.app = create_app(self.registry, **app_kwargs)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)
        self.port = 0

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        return _open(urllib.request.Request(self.url + path))

    def get_json(self, path: str) -> Any:
        status, _, body = self.get(path)
        assert status == 200, body
        return json.loads(body)

    def post(self, path: str, data: bytes, filename: str, **fields: Any) -> tuple[int, dict[str, str], bytes]:
        """A multipart/form-data POST of one ``file`` and string ``fields``, as a browser sends it."""
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
            if v is not None
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        req = urllib.request.Request(
            self.url + path, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        return _open(req)

    def post_chunked(self, path: str, chunks: list[bytes]) -> int:
        """A POST without Content-Length (chunked transfer encoding); returns the status."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(
                "POST", path, body=iter(chunks), encode_chunked=True,
                headers={"Content-Type": "multipart/form-data; boundary=x", "Transfer-Encoding": "chunked"},
            )  # fmt: skip
            return conn.getresponse().status
        finally:
            conn.close()


def _open(req: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
