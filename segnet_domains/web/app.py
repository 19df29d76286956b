"""The FastAPI application behind ``segnet-domains serve``: the page and the HTTP API it uses.

API (the page uses nothing else):

* ``GET /api/models`` — the served models (name, domain, bands, classes with colours, dropout …).
* ``POST /api/predict`` — multipart ``file`` (+ optional ``model``, ``axis``, ``uncertainty``):
  the mask file in the source's format with its geometry (a ZIP of mask and
  uncertainty when ``uncertainty`` is set).
* ``POST /api/preview`` — the same job, answered with JSON the page draws from
  (display image, labels, uncertainty, class counts, the files to download).
  While a volume or scene is being segmented the answer streams as NDJSON
  lines ``{"progress": [done, total]}`` … ``{"result": {...}}`` (or ``{"error": …}``).
* ``GET /api/samples``, ``GET /api/samples/{name}`` — the built-in samples.

Bad input is HTTP 400 ``{"error": "<the CLI's line>"}``; a body over the
upload limit is 413 (a POST without Content-Length is 411). Jobs run in
worker threads (:func:`starlette.concurrency.run_in_threadpool`), never on
the event loop. The interactive API docs are off: they load scripts from a
CDN, and the demo works offline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from segnet_domains.errors import InputError
from segnet_domains.web.jobs import JobOptions, JobResult, preview_payload, segment_upload
from segnet_domains.web.models import ModelRegistry
from segnet_domains.web.samples import SampleStore

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: Default upload limit (bytes).
MAX_UPLOAD = 512 * 2**20
#: A refused upload up to this size is read (and dropped) before the 413, so the client gets the answer.
MAX_DRAIN = 2**30


class UploadLimit:
    """ASGI middleware: 413 for a POST body over ``max_bytes``, 411 for one without Content-Length.

    Nothing of a refused body is stored; up to :data:`MAX_DRAIN` bytes of it
    are read and dropped first, because a client (browsers included) that is
    still sending when the connection closes reports a reset instead of the 413.

    Starlette and FastAPI have no body-size limit of their own (uvicorn only
    checks that the body matches its Content-Length), so the declared length
    is checked here before any byte is read.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            if length is None:
                await _send_json(send, 411, {"error": "the upload needs a Content-Length header"})
                return
            if not length.isdigit() or int(length) > self.max_bytes:
                if length.isdigit() and int(length) <= MAX_DRAIN:
                    await _drain(receive)  # discarded unread: a client still sending would see a reset
                mb = self.max_bytes / 2**20
                await _send_json(send, 413, {"error": f"upload too large (limit {mb:g} MB)"})
                return
        await self.app(scope, receive, send)


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def create_app(registry: ModelRegistry, max_upload: int = MAX_UPLOAD, mc_samples: int = 8) -> FastAPI:
    """The web demo's application.

    Longer than the house's 60 lines on purpose: the routes are closures over
    ``registry``, the limits and the sample store (FastAPI's app-factory idiom),
    each a few lines that hand the work to :mod:`segnet_domains.web.jobs`.

    Args:
        registry: the served models (loaded once, shared by all requests).
        max_upload: largest request body in bytes.
        mc_samples: Monte Carlo passes when uncertainty is asked for.
    """
    workdir = tempfile.TemporaryDirectory(prefix="segnet-serve-")
    samples = SampleStore(workdir.name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            workdir.cleanup()

    app = FastAPI(
        title="segnet-domains",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.add_middleware(UploadLimit, max_bytes=max_upload)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.registry, app.state.samples = registry, samples

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=400)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", exc_info=exc)
        return JSONResponse({"error": _internal(exc)}, status_code=500)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/models")
    async def models() -> list[dict[str, Any]]:
        return registry.describe()

    @app.get("/api/samples")
    async def sample_list() -> list[dict[str, Any]]:
        return samples.describe()

    @app.get("/api/samples/{name}", response_model=None)
    async def sample_file(name: str) -> Response:
        try:
            path = await run_in_threadpool(samples.path, name)
        except KeyError:
            return JSONResponse({"error": f"no sample named {name!r}"}, status_code=404)
        return FileResponse(path, filename=path.name)

    def job(
        file: UploadFile, model: str | None, axis: int | None, uncertainty: bool, preview: bool
    ) -> Callable[[Callable[[int, int], None] | None], JobResult]:
        options = JobOptions(axis=axis, uncertainty=uncertainty, samples=mc_samples)
        return partial(segment_upload, registry, file.filename, file.file, model or None, options, preview)

    @app.post("/api/predict", response_model=None)
    async def predict(
        file: Annotated[UploadFile, File()],
        model: Annotated[str | None, Form()] = None,
        axis: Annotated[int | None, Form()] = None,
        uncertainty: Annotated[bool, Form()] = False,
    ) -> Response:
        try:
            result = await run_in_threadpool(job(file, model, axis, uncertainty, False), None)
        except InputError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        out = result.download()
        headers = {
            "Content-Disposition": f'attachment; filename="{out.name}"',
            "X-Segnet-Model": result.model,
            "X-Segnet-Kind": result.kind,
        }
        return Response(out.data, media_type=out.media_type, headers=headers)

    @app.post("/api/preview", response_model=None)
    async def preview(
        file: Annotated[UploadFile, File()],
        model: Annotated[str | None, Form()] = None,
        axis: Annotated[int | None, Form()] = None,
        uncertainty: Annotated[bool, Form()] = False,
    ) -> Response:
        return await _with_progress(job(file, model, axis, uncertainty, True), registry)

    return app


async def _with_progress(
    run: Callable[[Callable[[int, int], None] | None], JobResult], registry: ModelRegistry
) -> Response:
    """Run a job in a worker thread; a plain JSON answer if it ends before reporting progress, else NDJSON.

    So bad input found while reading (before any slice or tile is segmented)
    is still an HTTP 400; a failure later in a stream is its last line.
    """
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def progress(done: int, total: int) -> None:
        loop.call_soon_threadsafe(events.put_nowait, {"progress": [done, total]})

    task = asyncio.ensure_future(run_in_threadpool(run, progress))
    first = await _next_event(task, events)
    if first is None:
        body, status = _outcome(task, registry)
        return JSONResponse(body, status_code=status)

    async def lines() -> AsyncIterator[str]:
        event: dict[str, Any] | None = first
        while event is not None:
            yield json.dumps(event) + "\n"
            event = await _next_event(task, events)
        yield json.dumps(_outcome(task, registry)[0]) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def _next_event(task: asyncio.Future[JobResult], events: asyncio.Queue[dict[str, Any]]) -> Any:
    """The next progress event, or ``None`` once the job is over and every event was taken."""
    while True:
        if not events.empty():
            return events.get_nowait()
        if task.done():
            return None
        getter = asyncio.ensure_future(events.get())
        done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()


def _outcome(task: asyncio.Future[JobResult], registry: ModelRegistry) -> tuple[dict[str, Any], int]:
    exc = task.exception()
    if isinstance(exc, InputError):
        return {"error": str(exc)}, 400
    if exc is not None:
        log.error("job failed", exc_info=exc)
        return {"error": _internal(exc)}, 500
    return {"result": preview_payload(task.result(), registry)}, 200


def _internal(exc: BaseException) -> str:
    return f"internal error ({type(exc).__name__}: {exc}".splitlines()[0] + ")"
