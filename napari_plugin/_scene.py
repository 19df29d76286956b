"""Segment a lazily opened GeoTIFF scene out of core, through the project's streaming tiler.

A scene the reader opened as a multiscale pyramid (too big to load) is not
read into memory for the network either: :func:`iter_tile_scene` runs
:func:`segnet_domains.geo.tiler.tile_scene` (windowed reads, batched tiles,
blending, COG output with the scene's CRS and transform) in a helper thread
and relays its progress as :class:`~napari_plugin._compute.Progress`. The
labels (and Monte Carlo variance) come back as lazily read pyramids of the
output files, so memory stays bounded from the reader to the Labels layer.

Closing the generator (Cancel in the widget) stops the tiler after the
current row of tiles and keeps the finished rows: running again resumes.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

from segnet_domains.inference import Segmenter

from ._compute import Cancelled, Progress


def scene_output_dir() -> Path:
    """Where scene results go: ``$SEGNET_DOMAINS_OUTPUT_DIR`` or ``<user cache>/segnet-domains/napari``."""
    override = os.environ.get("SEGNET_DOMAINS_OUTPUT_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("segnet-domains")) / "napari"


def iter_tile_scene(
    segmenter: Segmenter,
    scene_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    mc_samples: int = 0,
    cancel: threading.Event | None = None,
) -> Generator[Progress, None, Any]:
    """Tile ``scene_path`` to ``out_dir/<stem>_labels.tif``; yields progress, returns the tiler's result.

    Args:
        cancel: set it (or close the generator) to stop after the current row of
            tiles; the tiler thread stops by itself, nobody waits for it.

    Returns:
        :class:`segnet_domains.geo.tiler.SceneResult` (its ``outputs`` are the
        labels file, then the uncertainty file when ``mc_samples``).
    """
    from segnet_domains.geo.tiler import TileOptions, tile_scene

    out = Path(out_dir) if out_dir is not None else scene_output_dir()
    out.mkdir(parents=True, exist_ok=True)
    options = TileOptions(
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        uncertainty=bool(mc_samples),
        samples=max(1, mc_samples),
    )
    steps: queue.Queue[tuple[int, int] | None] = queue.Queue()
    cancel = cancel if cancel is not None else threading.Event()
    box: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt  # the tiler keeps finished rows on this: a re-run resumes
        steps.put((done, total))

    def work() -> None:
        try:
            box["result"] = tile_scene(segmenter, scene_path, out, options, progress=progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the generator's thread and re-raised there
            box["error"] = exc
        finally:
            steps.put(None)

    thread = threading.Thread(target=work, name="segnet-tile-scene", daemon=True)
    thread.start()
    finished = False
    try:
        yield Progress(0, 1)
        while (step := steps.get()) is not None:
            yield Progress(*step)
        finished = True
    finally:
        if not finished:
            cancel.set()
    thread.join()
    if isinstance(box.get("error"), KeyboardInterrupt) and cancel.is_set():
        raise Cancelled(f"{scene_path}: cancelled; the finished rows are kept and a re-run resumes")
    if "error" in box:
        raise box["error"]
    return box["result"]
