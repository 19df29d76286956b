"""Satellite and aerial scenes: windowed rasterio IO, the streaming tiler, batches and Dask, aerial training.

* :mod:`~segnet_domains.geo.scene` — open scenes, select bands, read windows with nodata masks.
* :mod:`~segnet_domains.geo.normalize` — scene-wide normalisation statistics from one decimated read.
* :mod:`~segnet_domains.geo.tiler` — :func:`iter_tile_scene` (a generator of progress) and
  :func:`tile_scene`: one scene → COG labels/probabilities/uncertainty.
* :mod:`~segnet_domains.geo.outputs` — resumable row files and the final Cloud-Optimized GeoTIFFs.
* :mod:`~segnet_domains.geo.batch` — many scenes, resume, JSON run summary (:func:`run_batch`).
* :mod:`~segnet_domains.geo.distributed` — the same over a dask.distributed cluster.
* :mod:`~segnet_domains.geo.dataset`, :mod:`~segnet_domains.geo.aerial_task` — aerial training data and task.
"""

from segnet_domains.geo.batch import RunSummary, run_batch
from segnet_domains.geo.tiler import SceneResult, TileOptions, iter_tile_scene, tile_scene
from segnet_domains.inference import SegmenterSpec

__all__ = [
    "RunSummary",
    "SceneResult",
    "SegmenterSpec",
    "TileOptions",
    "iter_tile_scene",
    "run_batch",
    "tile_scene",
]
