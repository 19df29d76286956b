"""Fan scenes out over a dask.distributed cluster: one task per scene.

``--workers N`` starts a :class:`~dask.distributed.LocalCluster` of ``N``
worker processes (one thread each; torch gets ``cores // N`` threads);
``--scheduler tcp://HOST:PORT`` uses an existing cluster, whose workers must
see the checkpoint, the scenes and the output folder at the same paths
(a shared file system). Each worker loads the model once and keeps it for
the scenes it gets. Results — including failures — come back as
:class:`~segnet_domains.geo.tiler.SceneResult` rows; resume works per scene
exactly as in a single process.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from segnet_domains.errors import InputError
from segnet_domains.geo.sources import is_remote
from segnet_domains.geo.tiler import SceneResult, TileOptions, attempt_scene
from segnet_domains.inference import Segmenter, SegmenterSpec
from segnet_domains.runtime import configure_threads, usable_cores

if TYPE_CHECKING:  # dask is an optional extra (``segnet-domains[distributed]``): imported where used
    from dask.distributed import Client, Future

_WORKER_SEGMENTERS: dict[tuple, Segmenter] = {}


def _tile_on_worker(
    spec: dict[str, Any], scene: str, out_dir: str, options: dict[str, Any], threads: int | None
) -> dict[str, Any]:
    """Runs in a Dask worker: tile one scene, return its result as a dict (never raises for bad input)."""
    configure_threads(threads)  # None (--scheduler): this worker's share of its host's usable cores
    key = tuple(sorted(spec.items()))
    seg = _WORKER_SEGMENTERS.get(key)
    if seg is None:
        try:
            seg = SegmenterSpec(**spec).build()
        except InputError as exc:
            return SceneResult(scene=scene, status="failed", error=str(exc)).to_dict()
        _WORKER_SEGMENTERS.clear()
        _WORKER_SEGMENTERS[key] = seg
    return attempt_scene(seg, scene, Path(out_dir), TileOptions(**options)).to_dict()


def run_distributed(
    spec: SegmenterSpec,
    scenes: Sequence[Path | str],
    out_dir: Path,
    options: TileOptions,
    results: list[SceneResult],
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> None:
    """Tile ``scenes`` on a Dask cluster, appending each finished scene's result to ``results``.

    Args:
        spec: how each worker builds the segmenter.
        scenes: scene paths.
        out_dir: output folder (shared with the workers).
        options: tiling options.
        results: filled as scenes finish.
        workers: start a local cluster with this many worker processes.
        scheduler: address of an existing scheduler (wins over ``workers``).
        progress: an overall tqdm bar.

    Raises:
        InputError: the scheduler cannot be reached.
    """
    with _client(workers, scheduler) as (client, threads):
        futures = {
            client.submit(
                _tile_on_worker,
                asdict(spec),
                str(s) if is_remote(str(s)) else str(Path(s).absolute()),
                str(Path(out_dir).absolute()),
                asdict(options),
                threads,
                pure=False,
            ): s
            for s in scenes
        }
        _collect(futures, results, progress)


@contextlib.contextmanager
def _client(workers: int | None, scheduler: str | None) -> Iterator[tuple[Client, int | None]]:
    """A client of the scheduler at ``scheduler``, or of a new local cluster of ``workers`` processes.

    Yields ``(client, torch threads per worker)`` (``None``: leave the workers' setting).
    """
    from dask.distributed import Client, LocalCluster

    if scheduler:
        _check_reachable(scheduler)
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(None, f"cannot reach the Dask scheduler {scheduler} ({exc})") from None
        with client:
            yield client, None
        return
    n = max(1, int(workers or 1))
    cluster = LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    try:
        with Client(cluster) as client:
            yield client, max(1, usable_cores() // n)
    finally:
        cluster.close()


def _collect(futures: dict[Future, Path | str], results: list[SceneResult], progress: bool) -> None:
    """Append each scene's result to ``results`` as it finishes; a dead worker is a failed scene."""
    from dask.distributed import as_completed

    bar = tqdm(total=len(futures), desc="scenes", unit="scene", disable=not progress)
    try:
        for fut in as_completed(futures):
            scene = futures[fut]
            try:
                row = SceneResult(**fut.result())
                row.scene = str(scene)
            except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory): report it
                row = SceneResult(scene=str(scene), status="failed", error=f"{scene}: worker failed ({exc})")
            results.append(row)
            bar.set_postfix_str(f"{str(scene).rstrip('/').rsplit('/', 1)[-1]}: {row.status}")
            bar.update(1)
    finally:
        bar.close()


def _check_reachable(address: str) -> None:
    """Fail at once when nothing listens at a ``tcp://``/``tls://`` scheduler address.

    ``Client`` retries a refused connection until its timeout; a plain socket
    connect tells a wrong address or a stopped scheduler in milliseconds.

    Raises:
        InputError: the address is malformed or refuses the connection.
    """
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme not in ("tcp", "tls"):
            return
        host, port = parse_host_port(location)
    except ValueError as exc:
        raise InputError(None, f"not a Dask scheduler address: {address} ({exc})") from None
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise InputError(None, f"cannot reach the Dask scheduler {address} ({exc.strerror or exc})") from None
