"""Segment a lazily opened GeoTIFF scene out of core, through the project's streaming tiler.

A scene the reader opened as a multiscale pyramid (too big to load) is not
read into memory for the network either: :func:`iter_scene` drives
:func:`segnet_domains.geo.tiler.iter_tile_scene` (windowed reads, batched
tiles, blending, COG output with the scene's CRS and transform) in the
caller's thread, yielding its progress. The labels (and Monte Carlo
uncertainty) come back as lazily read pyramids of the output files, so memory
stays bounded from the reader to the Labels layer.

Stopping iterating (Cancel in the widget) and closing the generator stops the
tiler after the current batch of tiles and keeps the finished rows: running
again resumes.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

from segnet_domains.geo.tiler import TileOptions, TileProgress, iter_tile_scene
from segnet_domains.inference import Segmenter

from ._reader import open_pyramid


def scene_output_dir() -> Path:
    """Where scene results go: ``$SEGNET_DOMAINS_OUTPUT_DIR`` or ``<user cache>/segnet-domains/napari``."""
    override = os.environ.get("SEGNET_DOMAINS_OUTPUT_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir  # the napari extra's, like napari itself

    return Path(user_cache_dir("segnet-domains")) / "napari"


def iter_scene(
    segmenter: Segmenter,
    scene_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    mc_samples: int = 0,
) -> Generator[TileProgress, None, tuple[list[Any], list[Any] | None, list[str]]]:
    """Tile ``scene_path`` to ``out_dir/<stem>_labels.tif``; yields the tiler's progress.

    Returns:
        ``(labels pyramid, uncertainty pyramid or None, files written)``: the
        labels file, then the uncertainty file when ``mc_samples``.
    """
    out = Path(out_dir) if out_dir is not None else scene_output_dir()
    out.mkdir(parents=True, exist_ok=True)
    options = TileOptions(
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        uncertainty=bool(mc_samples),
        samples=max(1, mc_samples),
    )
    result = yield from iter_tile_scene(segmenter, scene_path, out, options)
    files = list(result.outputs)
    unc = open_pyramid(files[-1]) if mc_samples else None
    return open_pyramid(files[0]), unc, files
