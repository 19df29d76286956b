"""Overlap preparing, inference and writing: a prefetching producer and a background writer.

Both run their work in one daemon thread with a bounded queue (so memory stays
bounded), hand back the thread's exceptions in the caller's thread, and stop
cleanly when the caller stops early; ``prefetch(depth=0)`` instead produces in
the caller's thread, for work that would only take cores from the caller.
rasterio datasets are not shared between threads: each side opens its own.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``depth`` ahead of the consumer.

    Exceptions raised while producing are re-raised in the consumer; leaving
    the loop early (``break``, an exception, ``close()``) stops the producer
    and closes ``items`` if it is a generator. ``depth=0`` produces in the
    consumer's own thread, each item when it is asked for (no thread): for
    work that would only compete with the consumer for the same cores.
    """
    if depth <= 0:
        yield from items  # closing this generator closes the items' iterator too (PEP 380)
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        it = iter(items)
        try:
            for item in it:
                if not _put(q, item, stop):
                    return
            _put(q, _DONE, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            _put(q, _Failure(exc), stop)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="segnet-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.05)
        thread.join()


class BackgroundWriter(Generic[T]):
    """Call ``write(item)`` for every :meth:`put` item in a background thread, in order.

    Args:
        write: the work (e.g. write rows to disk).
        depth: items that may wait in the queue.
    """

    def __init__(self, write: Callable[[T], None], depth: int = 2) -> None:
        self._write = write
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="segnet-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _DONE:
                return
            if self._error is not None:
                continue  # drain after a failure
            try:
                self._write(item)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = exc

    def put(self, item: T) -> None:
        """Queue ``item`` (blocks while the queue is full); re-raises an earlier write error."""
        if self._error is not None:
            raise self._error
        if not _put(self._q, item, self._stop):
            raise RuntimeError("writer closed")

    def close(self, raise_errors: bool = True) -> None:
        """Finish the queued items and stop; re-raise a write error unless ``raise_errors`` is false."""
        if self._thread.is_alive():
            self._q.put(_DONE)
            self._thread.join()
        if raise_errors and self._error is not None:
            raise self._error
