"""A static file server on 127.0.0.1 that answers HTTP range requests and counts the bytes it sends.

The standard library's ``SimpleHTTPRequestHandler`` ignores ``Range``
headers (it would send the whole file for every read GDAL makes), so the
handler here serves ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` ranges with
``206 Partial Content`` (several ranges in one header get the whole file, as
RFC 9110 allows). Every byte of every response body is counted, per path, so
tests can check how much of a file a reader fetched.

Also serves S3-style paths (``/bucket/key``): GDAL's ``/vsis3/`` reads from it
with ``AWS_S3_ENDPOINT=127.0.0.1:PORT``, ``AWS_HTTPS=NO``,
``AWS_VIRTUAL_HOSTING=FALSE``, ``AWS_NO_SIGN_REQUEST=YES``.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class ServedFiles:
    """A running server: its base URL and what it sent."""

    root: Path
    url: str
    port: int
    bytes_sent: Counter = field(default_factory=Counter)
    requests: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def total(self) -> int:
        """Body bytes sent so far, all paths together."""
        with self.lock:
            return sum(self.bytes_sent.values())

    def reset(self) -> None:
        with self.lock:
            self.bytes_sent.clear()
            self.requests.clear()


def _handler(state: ServedFiles) -> type[BaseHTTPRequestHandler]:
    class RangeHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _target(self) -> Path | None:
            rel = unquote(urlsplit(self.path).path).lstrip("/")
            path = (state.root / rel).resolve()
            if state.root.resolve() not in path.parents or not path.is_file():
                return None
            return path

        def _send(self, code: int, body: bytes, headers: dict[str, str], length: int | None = None) -> None:
            """Send ``body`` (a GET), or only the headers with ``length`` (a HEAD)."""
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if length is None:
                self.wfile.write(body)
            with state.lock:
                state.bytes_sent[self.path] += len(body) if length is None else 0
                state.requests[self.path] += 1

        def do_GET(self) -> None:
            path = self._target()
            if path is None:
                self._send(404, b"not found", {"Content-Type": "text/plain"})
                return
            size = path.stat().st_size
            ctype = "application/json" if path.suffix == ".json" else "image/tiff"
            headers = {"Content-Type": ctype, "Accept-Ranges": "bytes"}
            m = _RANGE.match(self.headers.get("Range", "").replace(" ", ""))
            if not m or not (m.group(1) or m.group(2)):
                self._send(200, path.read_bytes(), headers)
                return
            if m.group(1):
                start, end = int(m.group(1)), int(m.group(2)) if m.group(2) else size - 1
            else:
                start, end = max(0, size - int(m.group(2))), size - 1
            if start >= size:
                self._send(416, b"", {**headers, "Content-Range": f"bytes */{size}"})
                return
            end = min(end, size - 1)
            with path.open("rb") as f:
                f.seek(start)
                body = f.read(end - start + 1)
            self._send(206, body, {**headers, "Content-Range": f"bytes {start}-{end}/{size}"})

        def do_HEAD(self) -> None:
            path = self._target()
            if path is None:
                self._send(404, b"", {}, length=0)
            else:
                self._send(200, b"", {"Accept-Ranges": "bytes"}, length=path.stat().st_size)

    return RangeHandler


@contextmanager
def serve_files(root: str | Path) -> Iterator[ServedFiles]:
    """Serve ``root`` on ``http://127.0.0.1:<free port>/`` in a thread while the context is open."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    state = ServedFiles(Path(root), f"http://127.0.0.1:{port}", port)
    server.RequestHandlerClass = _handler(state)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
