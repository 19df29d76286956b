"""prefetch: read-ahead in a thread, or in the consumer's thread at depth 0; errors and early stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from segnet_domains.threads import prefetch


def _producer(log: list[tuple[str, int, int]], n: int = 5) -> Iterator[int]:
    try:
        for i in range(n):
            log.append(("made", i, threading.get_ident()))
            yield i
    finally:
        log.append(("closed", -1, threading.get_ident()))


def test_depth_zero_produces_in_the_consumers_thread_on_demand() -> None:
    log: list[tuple[str, int, int]] = []
    me = threading.get_ident()
    it = prefetch(_producer(log), depth=0)
    assert log == []  # nothing made before it is asked for
    assert next(it) == 0 and next(it) == 1
    assert [e[1] for e in log] == [0, 1]  # no read-ahead
    it.close()  # an early stop closes the producer
    assert log[-1][0] == "closed"
    assert {e[2] for e in log} == {me}


@pytest.mark.parametrize("depth", [1, 2])
def test_positive_depth_reads_ahead_in_a_thread(depth: int) -> None:
    log: list[tuple[str, int, int]] = []
    assert list(prefetch(_producer(log), depth=depth)) == [0, 1, 2, 3, 4]
    assert {e[2] for e in log} != {threading.get_ident()} and log[-1][0] == "closed"


@pytest.mark.parametrize("depth", [0, 2])
def test_producer_errors_reach_the_consumer(depth: int) -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("bad window")

    it = prefetch(failing(), depth=depth)
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad window"):
        next(it)
