"""Segment one raster scene of any size: windowed reads, batched tiles, smooth blending, COG out.

:func:`tile_scene` streams a scene through the :class:`~segnet_domains.inference.Segmenter`
batch by batch of tiles, in raster order:

1. the windows of the next batches are read with rasterio (never the whole
   scene) and cut into batches of tiles, in the file's own dtype: by a
   prefetching thread, or between the model's passes when its threads take
   every core (:meth:`_Job.read_ahead`);
2. the main thread normalises each batch where the model runs, with
   scene-wide statistics (:class:`~segnet_domains.geo.normalize.SceneNormalizer`,
   from one decimated read; nodata pixels are set to 0 after normalisation,
   so their stored values cannot change any valid pixel's prediction), runs
   the tiles of a :class:`~segnet_domains.tiling.TileGrid` (aligned to the
   network's pooling grid) in batches, blends them with a
   :class:`~segnet_domains.tiling.StreamBlender` and turns every finished
   block into compact labels / probabilities / variance;
3. a writer thread appends each finished band of rows to the resumable
   :class:`~segnet_domains.geo.outputs.RowStore`.

Memory is the rows two tile rows share (``classes × overlap × width``
float32), the current batch's columns and a few batches in flight, whatever
the scene's height; a rerun after a kill continues from the last finished
band of rows and gives the same result as an uninterrupted run. Stopping the
generator (closing it, or an exception in the driver such as Ctrl-C) keeps
the finished rows for that rerun; any other failure leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from segnet_domains.checkpoint import ModelInfo
from segnet_domains.devices import pixels_tensor, to_device, to_host
from segnet_domains.errors import InputError
from segnet_domains.geo.normalize import SceneNormalizer
from segnet_domains.geo.outputs import (
    LABEL_NODATA,
    PROBA_NODATA,
    PROBA_SCALE,
    OutputPaths,
    RowStore,
    read_tag,
)
from segnet_domains.geo.scene import (
    Scene,
    fit_tile,
    open_scene,
    read_sample,
    read_window,
    select_bands,
)
from segnet_domains.inference import Segmenter, class_labels, class_mean_variance, drive
from segnet_domains.runtime import usable_cores
from segnet_domains.threads import BackgroundWriter, prefetch
from segnet_domains.tiling import BlendedBlock, StreamBlender, Tile, TileGrid, grid_batches

log = logging.getLogger(__name__)

#: GDAL block cache (bytes; rasterio passes it to GDALSetCacheMax): bounded, whatever the scene size.
GDAL_CACHE_BYTES = 16 * 2**20
#: The tile reader's block cache may grow to this (:func:`reader_cache_bytes`), no further.
READER_CACHE_MAX_BYTES = 32 * 2**20
#: Pixels of a blended block encoded at a time (:meth:`_Job.encode`): 2 MB of int64 argmax indices.
ENCODE_PIXELS = 1 << 18

RUN_KEY_TAG = "SEGNET_RUN_KEY"
#: How tiles are placed (:func:`~segnet_domains.tiling.tile_starts`), part of the run key: outputs and
#: interrupted runs of versions that placed them otherwise ("fixed steps, last tile flush") differ in
#: their seams and are never skipped or resumed as if they were this run's.
GRID_LAYOUT = "even"
SETTINGS_TAG = "SEGNET_SETTINGS"

ProgressCallback = Callable[[int, int], Any]


@dataclass
class TileOptions:
    """How to tile (the ``tile`` command's options).

    Attributes:
        tile_size: tile edge (default: the checkpoint's, else 512).
        overlap: pixels shared by neighbouring tiles (default: the
            checkpoint's, else ``tile_size // 4``); should cover the receptive field.
        batch_size: tiles per forward pass (default: the segmenter's).
        bands: 1-based bands to use (default: by the checkpoint's band names,
            else all bands).
        assets: a STAC item's assets to stack as the scene's bands, in order.
        nodata: nodata value for scenes that do not declare one (overrides).
        proba: also write per-class probabilities.
        uncertainty: also write Monte Carlo dropout variance.
        samples: Monte Carlo samples for ``uncertainty``.
        blend: ``"cosine"`` or ``"gaussian"`` blending window.
        prefetch: batches a reader thread reads ahead of the model; 0 reads
            them in the model's thread, between its passes. Default
            (:meth:`_Job.read_ahead`): 2 on an accelerator; on the CPU 1
            (its passes take far longer than reading a batch, so a deeper
            queue would only hold more batches in memory), or 0 for a local
            scene when the model's threads take every usable core.
        force: replace finished outputs and interrupted work made with other
            settings (otherwise refused, never blended).
    """

    tile_size: int | None = None
    overlap: int | None = None
    batch_size: int | None = None
    bands: list[int] | None = None
    assets: list[str] | None = None
    nodata: float | None = None
    proba: bool = False
    uncertainty: bool = False
    samples: int = 8
    blend: str = "cosine"
    prefetch: int | None = None
    force: bool = False


@dataclass
class SceneResult:
    """What happened to one scene (a row of the run summary)."""

    scene: str
    status: str  # done | resumed | skipped | failed
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    height: int | None = None
    width: int | None = None
    tiles: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TileProgress(NamedTuple):
    """One step of :func:`iter_tile_scene`.

    Attributes:
        done: tiles segmented (those of an earlier, interrupted run included).
        total: tiles of the scene.
        rows_done: tile rows written to disk (a rerun resumes after them).
        rows_total: tile rows of the scene.
    """

    done: int
    total: int
    rows_done: int
    rows_total: int


def model_fingerprint(segmenter: Segmenter) -> str:
    """Hash of the weights and numeric setup a result depends on (cached on the segmenter)."""
    cached = getattr(segmenter, "_segnet_fingerprint", None)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    segmenter.backend.digest(h)  # the weights (PyTorch) or the model's bytes (ONNX)
    h.update(f"{segmenter.dtype}|{segmenter.device.type}|{segmenter.tta}".encode())
    h.update(json.dumps(segmenter.info.normalization, sort_keys=True).encode())
    value = h.hexdigest()[:20]
    segmenter._segnet_fingerprint = value  # type: ignore[attr-defined]
    return value


def _run_key(segmenter: Segmenter, scene: Scene, params: dict[str, Any]) -> str:
    src = {
        "model": model_fingerprint(segmenter),
        "scene": scene.identity,
        **params,
    }
    return hashlib.sha256(json.dumps(src, sort_keys=True).encode()).hexdigest()[:20]


def tile_scene(
    segmenter: Segmenter,
    scene_path: str | Path,
    out_dir: str | Path,
    options: TileOptions | None = None,
    progress: bool | ProgressCallback = False,
    position: int | None = None,
    on_rows: Callable[[int, int], None] | None = None,
) -> SceneResult:
    """Segment one scene into ``out_dir/<stem>_labels.tif`` (and ``_proba``/``_uncertainty``).

    Drives :func:`iter_tile_scene` to its end.

    Args:
        segmenter: the model.
        scene_path: see :func:`iter_tile_scene`.
        out_dir: destination folder (must exist).
        options: :class:`TileOptions`.
        progress: ``True`` for a tqdm bar, or ``callback(tiles done, total)``.
        position: tqdm bar position (when an overall bar is shown too).
        on_rows: ``callback(tile rows done, total)`` once more finished bands
            of rows are on disk (tests use it to interrupt a run).

    Returns:
        The :class:`SceneResult` (status ``done``, ``resumed`` or ``skipped``).

    Raises:
        InputError: an unusable scene; nothing partial is left behind.
    """
    written = 0

    def rows(step: TileProgress) -> None:
        nonlocal written
        if on_rows is not None and step.rows_done > written:
            written = step.rows_done
            on_rows(step.rows_done, step.rows_total)

    label = str(scene_path).rstrip("/").rsplit("/", 1)[-1]
    steps = iter_tile_scene(segmenter, scene_path, out_dir, options)
    return drive(steps, progress, desc=label, unit="tile", position=position, on_step=rows)


def iter_tile_scene(
    segmenter: Segmenter,
    scene_path: str | Path,
    out_dir: str | Path,
    options: TileOptions | None = None,
) -> Generator[TileProgress, None, SceneResult]:
    """Segment one scene step by step: yields :class:`TileProgress` per batch of tiles, returns its result.

    Finished scenes (outputs present with the same run key) are skipped; a
    scene interrupted earlier continues from its last finished band of rows.
    Closing the generator (or an exception in its driver) stops after the
    current batch and keeps the finished rows: a rerun resumes from them.

    Args:
        segmenter: the model.
        scene_path: a raster rasterio can read (any band count; uint8, int16,
            uint16, float32 …), local or remote (``https://``, ``s3://``,
            ``/vsi…``), or a STAC item (with ``options.assets``).
        out_dir: destination folder (must exist).
        options: :class:`TileOptions`.

    Raises:
        InputError: an unusable scene (not a raster, truncated, band count,
            smaller than one tile …); nothing partial is left behind.
    """
    t0 = time.perf_counter()
    opts = options or TileOptions()
    plan = _plan(segmenter, scene_path, Path(out_dir), opts)
    outputs = [str(p) for p in plan.paths.all()]
    if all(p.is_file() for p in plan.paths.all()) and read_tag(plan.paths.labels, RUN_KEY_TAG) == plan.key:
        return SceneResult(status="skipped", outputs=outputs, **plan.base)
    _check_earlier_outputs(plan.paths, plan.key, plan.settings, opts.force)
    grid = TileGrid.create(
        plan.scene.height, plan.scene.width, plan.tile, plan.overlap, align=segmenter.multiple
    )
    store, saved = _open_store(plan, Path(out_dir), segmenter.num_classes, opts)
    first = int(saved["tile_rows_done"]) if saved else 0
    try:
        store.open(fresh=saved is None)
        normalizer = _normalizer(plan, segmenter.info, opts)
        if first < grid.shape[0]:
            job = _Job(
                segmenter, plan.scene, grid, plan.bands, normalizer, opts, plan.batch_size, store, plan.key
            )
            yield from job.run(first)
        _finalize(store, plan, segmenter.info, normalizer)
    except (KeyboardInterrupt, GeneratorExit):
        store.close()  # stopped: keep the finished rows, a rerun continues from them
        raise
    except BaseException:
        store.discard()  # a failure leaves nothing partial
        raise
    store.discard()
    seconds = round(time.perf_counter() - t0, 3)
    status = "resumed" if first > 0 else "done"
    return SceneResult(status=status, seconds=seconds, outputs=outputs, tiles=len(grid), **plan.base)


@dataclass
class _Plan:
    """What is decided about a scene before any pixel is read: tiling, run key, outputs."""

    scene: Scene
    bands: list[int]
    tile: int
    overlap: int
    batch_size: int
    key: str
    settings: dict[str, Any]
    paths: OutputPaths

    @property
    def base(self) -> dict[str, Any]:
        """The :class:`SceneResult` fields every outcome has."""
        return {"scene": str(self.scene.path), "height": self.scene.height, "width": self.scene.width}


def _plan(segmenter: Segmenter, scene_path: str | Path, out_dir: Path, opts: TileOptions) -> _Plan:
    """Open the scene (metadata only), check it against the model, and fix the run's settings and key."""
    scene = open_scene(scene_path, opts.assets)
    bands = select_bands(scene, segmenter.info, opts.bands)
    tile_size, overlap = segmenter.resolve_tiling(opts.tile_size, opts.overlap)
    tile_size, overlap = fit_tile(scene, tile_size, overlap, segmenter.multiple)
    k = segmenter.num_classes
    if k > LABEL_NODATA:
        raise InputError(None, f"the checkpoint has {k} classes; tiling writes uint8 labels (at most 255)")
    if opts.uncertainty:
        segmenter.info.require_dropout(None, "--uncertainty")
    if scene.crs is None:
        warnings.warn(f"{scene.path}: scene has no CRS; the output will have none either", stacklevel=3)
    batch_size = int(opts.batch_size or segmenter.batch_size)
    params = {
        "tile": tile_size,
        "overlap": overlap,
        "bands": bands,
        "nodata": opts.nodata,
        "proba": opts.proba,
        "uncertainty": opts.uncertainty,
        "samples": opts.samples if opts.uncertainty else 0,
        "blend": opts.blend,
        "batch": batch_size,
        "grid": GRID_LAYOUT,
    }
    key = _run_key(segmenter, scene, params)
    # a local file: its size and time; a URL or STAC item: what its resume key holds (scene.identity)
    st = scene.source.local.stat() if scene.source.local is not None else None
    stamp = [st.st_size, st.st_mtime_ns] if st is not None else list(scene.identity)
    settings = {**params, "model": model_fingerprint(segmenter), "scene": stamp}
    paths = OutputPaths.for_scene(out_dir, scene.stem, opts.proba, opts.uncertainty)
    return _Plan(scene, bands, tile_size, overlap, batch_size, key, settings, paths)


def _open_store(
    plan: _Plan, out_dir: Path, k: int, opts: TileOptions
) -> tuple[RowStore, dict[str, Any] | None]:
    """The run's resumable row store and what an interrupted run with the same key saved (or ``None``)."""
    scene = plan.scene
    store = RowStore(
        out_dir / f".{scene.stem}.tiling",
        scene.height,
        scene.width,
        k,
        opts.proba,
        opts.uncertainty,
        plan.settings,
    )
    earlier = store.read_progress()
    if earlier is not None and earlier.get("key") != plan.key and not opts.force:
        raise InputError(
            scene.path,
            f"an interrupted run in {store.workdir} used other settings "
            f"({settings_diff(earlier.get('settings'), plan.settings)}); rerun with those to resume it, "
            "or add --force to start over",
        )
    return store, store.load_progress(plan.key)


def reader_cache_bytes(scene: Scene, grid: TileGrid) -> int:
    """GDAL's block cache for reading ``scene``'s tiles: enough that two tile rows share decoded blocks.

    Consecutive tile rows overlap, and a tile row of a tiled GeoTIFF reads
    the block rows it crosses in windows of a batch of tiles; the next tile
    row reads the lower of them again. A cache that holds the block rows one
    tile row crosses and one more (all of the file's bands: a
    pixel-interleaved block is decoded for every band at once) decodes each
    block once. The reader alone, 3-band uint16 DEFLATE scenes in 512²
    blocks, 2-core AMD EPYC: 4096² (overlap 128) 1.23 s of CPU with
    :data:`GDAL_CACHE_BYTES`, 0.64 s with 32 MB, 0.58 s with 40 MB; 8192²
    (overlap 64) 4.45, 3.59 and (48 MB) 2.28 s. Bounded by
    :data:`READER_CACHE_MAX_BYTES`, so memory stays independent of the
    scene's size (a wider scene decodes part of the shared blocks again),
    and at least :data:`GDAL_CACHE_BYTES`, which a scene whose profile has
    no block layout also gets.
    """
    block_w, block_h = scene.profile.get("blockxsize"), scene.profile.get("blockysize")
    if not block_w or not block_h:
        return GDAL_CACHE_BYTES
    across = -(-scene.width // int(block_w)) * int(block_w)
    rows = -(-grid.tile_height // int(block_h)) + 2  # block rows a tile row can cross (+1 unaligned), +1
    need = across * int(block_h) * rows * scene.count * np.dtype(scene.dtype).itemsize
    return int(min(max(need, GDAL_CACHE_BYTES), READER_CACHE_MAX_BYTES))


def _normalizer(plan: _Plan, info: ModelInfo, opts: TileOptions) -> SceneNormalizer:
    """Scene-wide normalisation statistics from one decimated read."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), plan.scene.open() as src:
        sample, valid = read_sample(src, plan.bands, opts.nodata, opener=plan.scene.open)
    return SceneNormalizer(info.normalization, sample, valid)


def _finalize(store: RowStore, plan: _Plan, info: ModelInfo, normalizer: SceneNormalizer) -> None:
    """Copy the finished rows into the scene's COG outputs, tagged with the run's key and settings."""
    tags = {
        RUN_KEY_TAG: plan.key,
        SETTINGS_TAG: json.dumps(plan.settings),
        "SEGNET_SOURCE": plan.scene.name,
        "SEGNET_ARCHITECTURE": info.architecture,
        "SEGNET_DOMAIN": str(info.domain),
        "SEGNET_TILE": str(plan.tile),
        "SEGNET_OVERLAP": str(plan.overlap),
        "SEGNET_BANDS": json.dumps(plan.bands),
        "SEGNET_NORMALIZATION": json.dumps({**info.normalization, **normalizer.stats}),
    }
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):  # the COG copy streams too
        store.finalize(
            plan.paths, plan.scene.crs, plan.scene.transform, info.class_names, info.class_colors, tags
        )


def attempt_scene(
    segmenter: Segmenter,
    scene: Path | str,
    out_dir: Path,
    options: TileOptions,
    progress: bool = False,
    position: int | None = None,
) -> SceneResult:
    """:func:`tile_scene`, with a failure turned into a ``failed`` result instead of an exception.

    What the batch runner and each Dask worker run per scene.
    """
    t0 = time.perf_counter()
    try:
        return tile_scene(segmenter, scene, out_dir, options, progress=progress, position=position)
    except InputError as exc:
        error = str(exc)
    except (OSError, RuntimeError, ValueError, MemoryError) as exc:
        log.debug("scene %s failed", scene, exc_info=True)
        error = f"{scene}: {type(exc).__name__}: {exc}".splitlines()[0]
    return SceneResult(
        scene=str(scene), status="failed", seconds=round(time.perf_counter() - t0, 3), error=error
    )


def is_tile_output(path: Path) -> bool:
    """A raster written by :func:`tile_scene` (it carries the run-key tag)."""
    return read_tag(Path(path), RUN_KEY_TAG) is not None


def settings_diff(old: Any, new: dict[str, Any]) -> str:
    """``"tile 128 → 64, overlap 32 → 16"``: what differs between two runs' settings."""
    if not isinstance(old, dict):
        return "settings not recorded"
    names = {"model": "model weights", "scene": "scene file contents"}
    parts = []
    for k in new:
        if old.get(k) != new[k]:
            parts.append(names[k] + " changed" if k in names else f"{k} {old.get(k)!r} → {new[k]!r}")
    return ", ".join(parts) or "same settings, other key"


def _check_earlier_outputs(paths: OutputPaths, key: str, settings: dict[str, Any], force: bool) -> None:
    """Finished outputs of another run are replaced only with ``force``; foreign files never."""
    for p in paths.all():
        if not p.exists():
            continue
        earlier = read_tag(p, RUN_KEY_TAG) if p.is_file() else None
        if earlier is None:
            raise InputError(p, "exists and is not a tiling output of ours; it is left alone")
        if earlier != key and not force:
            try:
                old = json.loads(read_tag(p, SETTINGS_TAG) or "null")
            except ValueError:
                old = None
            raise InputError(
                p,
                f"was tiled with other settings ({settings_diff(old, settings)}); "
                "add --force to replace it, or choose another --out-dir",
            )


class _Job:
    """The three-stage stream of one scene (read → infer/blend → write)."""

    def __init__(
        self,
        segmenter: Segmenter,
        scene: Scene,
        grid: TileGrid,
        bands: Sequence[int],
        normalizer: SceneNormalizer,
        opts: TileOptions,
        batch_size: int,
        store: RowStore,
        key: str,
    ) -> None:
        self.seg, self.scene, self.grid, self.bands = segmenter, scene, grid, list(bands)
        self.normalizer, self.opts, self.batch_size = normalizer, opts, batch_size
        self.store, self.key = store, key
        self.k = segmenter.num_classes
        self.rows_written = 0  # tile rows on disk (set by the writer thread)
        self._rows: dict[str, np.ndarray] = {}  # the compact outputs of the tile row being finished

    # ---------------------------------------------------------- stage 1: read (thread, or between passes)

    def read_ahead(self) -> int:
        """Batches read ahead of the model by a reader thread (0: read in the model's thread, between passes).

        The user's :attr:`TileOptions.prefetch` if given. Otherwise 2 for a
        model on an accelerator, and on the CPU: 1 for a remote scene (the
        thread waits on the network, not on a core) or where a core is left
        beside the model's threads; 0 for a local scene when the model's
        threads take every core the process may use. There a reader thread
        only competes with them: decoding preempts one of the model's
        threads, and each of its parallel regions waits for that one. A
        4096² uint16 DEFLATE scene on 2 cores (AMD EPYC Zen 4, bf16), in
        alternation: the model's own passes took 4.34–4.96 s beside a reader
        thread and 4.04–4.21 s without (three pairs); the whole scene, over
        six pairs, a median 5.28 s against 5.43 s (paired 0.98: a small gain,
        inside this machine's noise). Reading in the model's thread also
        leaves no batch waiting in memory.
        """
        if self.opts.prefetch is not None:
            return self.opts.prefetch
        if self.seg.device.type != "cpu":
            return 2
        if self.scene.source.local is None or usable_cores() > torch.get_num_threads():
            return 1
        return 0

    def decode_threads(self) -> int:
        """GDAL's threads for decoding a window's blocks (``GDAL_NUM_THREADS``): the usable cores, or 1.

        Every usable core where no core is busy with anything else while a
        window is read: for a model on an accelerator, and for reads made in
        the model's own thread between its passes (:meth:`read_ahead` 0).
        There the 4096² DEFLATE scene's windows took 0.19 against 0.31 s on
        2 cores (0.35 against 0.31 s of CPU), and the whole scene 0.98–0.99×
        paired over twelve alternations (medians 4.25 → 4.03 s, 4.00 → 3.96
        s; SegNet 8…64, 2-core AMD EPYC Zen 4). One thread beside a CPU
        model's passes, where more would only compete with them (4096² tile
        11.3 → 10.9 s on 2 cores with one), and for a remote scene, whose
        reads go through the block cache so that overlapping windows are not
        fetched again (GDAL's threaded reads bypass it).
        """
        if self.scene.source.local is None:
            return 1
        if self.seg.device.type != "cpu" or self.read_ahead() == 0:
            return usable_cores()
        return 1

    def batches(self, first_row: int) -> Iterator[tuple[list[list[Tile]], np.ndarray, np.ndarray]]:
        """``(parts, B×C×h×w raw pixels, B×h×w valid)`` of :func:`~segnet_domains.tiling.grid_batches`.

        Full batches across tile rows (memory independent of the scene's
        width), from the first batch that reaches tile row ``first_row``. The
        pixels, in the file's dtype (half the bytes of float32 for uint16
        scenes), come from windows of ``batch_size`` tiles of a row
        (:meth:`read_chunk`), each read once and kept while a batch needs it,
        so the scene is read in the same windows whatever the batches. They
        are normalised where the model runs (:meth:`infer`).
        """
        cache = reader_cache_bytes(self.scene, self.grid)
        env = rasterio.Env(GDAL_CACHEMAX=cache, GDAL_NUM_THREADS=str(self.decode_threads()))
        with env, self.scene.open() as src:
            windows: dict[tuple[int, int], tuple[int, np.ndarray, np.ndarray]] = {}
            for parts in grid_batches(self.grid, self.batch_size):
                if parts[-1][-1].index[0] < first_row:
                    continue
                tiles = [t for part in parts for t in part]  # one shape per batch
                batch, valid = None, np.empty((len(tiles), tiles[0].height, tiles[0].width), bool)
                for j, t in enumerate(tiles):
                    key = (t.index[0], t.index[1] // self.batch_size)
                    if key not in windows:
                        for done in [k for k in windows if k < key]:
                            del windows[done]
                        windows[key] = self.read_chunk(src, *key)
                    c0, data, ok = windows[key]
                    if batch is None:
                        batch = np.empty((len(tiles), data.shape[0], t.height, t.width), data.dtype)
                    batch[j] = data[:, :, t.col - c0 : t.col - c0 + t.width]
                    valid[j] = ok[:, t.col - c0 : t.col - c0 + t.width]
                assert batch is not None
                yield parts, batch, valid

    def read_chunk(self, src: rasterio.DatasetReader, i: int, c: int) -> tuple[int, np.ndarray, np.ndarray]:
        """``(first column, C×h×w pixels as stored, h×w validity)`` of row i's tiles ``c·B … c·B+B-1``."""
        tiles = self.grid.row(i)[c * self.batch_size : (c + 1) * self.batch_size]
        c0, c1 = tiles[0].col, tiles[-1].col + tiles[-1].width
        window = Window(c0, tiles[0].row, c1 - c0, tiles[0].height)
        data, valid = read_window(src, self.bands, window, self.opts.nodata)
        return c0, data, valid

    # ------------------------------------------------------------------ stage 2: infer + blend

    def infer(self, first: Tile, batch: np.ndarray, valid: np.ndarray) -> list[torch.Tensor]:
        """On the model's device: ``[B×K×h×w probabilities, B×1×h×w validity(, B×1×h×w uncertainty)]``.

        The channel groups the blender stacks (:meth:`StreamBlender.add`),
        kept apart: concatenating them would copy the whole batch once more.
        The raw pixels cross to the model's device and are normalised there
        with the scene's statistics; nodata pixels are then set to 0, so their
        stored values cannot change any valid pixel's prediction. The
        uncertainty band is :func:`~segnet_domains.inference.class_mean_variance`
        of :meth:`Segmenter.sample`'s per-class variance, its dropout stream
        seeded by the batch's place in the grid (its ``first`` tile): the same
        draws on a rerun, a resumed run or another worker.
        """
        device = self.seg.input_device
        valid_t = to_device(torch.from_numpy(valid), device)
        batch_t = self.normalizer(to_device(pixels_tensor(batch), device), self.seg.input_channels_last)
        if not valid.all():
            batch_t.masked_fill_(~valid_t[:, None], 0.0)  # nodata carries no information into the network
        p = self.seg.proba_on_device(batch_t)  # stays where the model ran: blended there too
        groups = [p, to_device(valid_t[:, None], p.device).to(torch.float32)]
        if self.opts.uncertainty:
            seed = 1_000_003 * first.index[0] + first.index[1]
            _, var = self.seg.sample(batch_t, max(1, self.opts.samples), seed=seed)
            groups.append(to_device(class_mean_variance(var, class_axis=1)[:, None], p.device))
        return groups

    # ------------------------------------------------------------------ stage 3: write (thread)

    def new_rows(self, n: int) -> dict[str, np.ndarray]:
        """Empty compact outputs for ``n`` full-width rows (uint8 labels/probabilities, float32 variance)."""
        k, w = self.k, self.grid.width
        values = {"labels": np.empty((n, w), np.uint8)}
        if self.opts.proba:
            values["proba"] = np.empty((k, n, w), np.uint8)
        if self.opts.uncertainty:
            values["uncertainty"] = np.empty((n, w), np.float32)
        return values

    def encode(self, block: BlendedBlock, rows: dict[str, np.ndarray]) -> None:
        """A finished block of weighted sums → its columns of the compact row outputs.

        Computed where the block was blended (the model's device); only the
        compact results (uint8 labels and probabilities, float32 variance)
        cross to the host, into the rows that wait for the writer. A few rows
        at a time (:data:`ENCODE_PIXELS`): the temporaries (int64 argmax
        indices, float ratios) would otherwise grow with the block, whose
        width grows with the scene's up to a batch of tiles (13 MB of indices
        for a 448×3648 block).
        """
        height, width = block.weights.shape
        step = max(1, ENCODE_PIXELS // max(1, width))
        cols = slice(block.col, block.col + width)
        for r in range(0, height, step):
            part = slice(r, min(r + step, height))
            views = {name: v[..., part, cols] for name, v in rows.items()}
            self._encode(block.sums[:, part], block.weights[part], views)

    def _encode(self, sums: torch.Tensor, weights: torch.Tensor, out: dict[str, np.ndarray]) -> None:
        """:meth:`encode` of a few rows into ``out`` (views of the row outputs)."""
        k = self.k
        invalid = sums[k] <= 0.5 * weights  # blended validity ≤ 0.5
        # weights are positive: argmax of sums = of means
        out["labels"][...] = to_host(class_labels(sums[:k], 0).masked_fill_(invalid, LABEL_NODATA)).numpy()
        if self.opts.proba:
            q = torch.round(sums[:k] * (PROBA_SCALE / weights)).to(torch.uint8)  # half to even, as np.rint
            out["proba"][...] = to_host(q.masked_fill_(invalid, PROBA_NODATA)).numpy()
        if self.opts.uncertainty:
            u = (sums[k + 1] / weights).masked_fill_(invalid, float("nan"))
            out["uncertainty"][...] = to_host(u).numpy()

    def write(self, item: tuple[int, int, int, dict[str, np.ndarray]]) -> None:
        """Writer thread: one finished band of rows to the store, then the progress a rerun resumes from."""
        i, start, n, values = item
        if n:
            self.store.write_rows(start, values)
        self.store.save_progress(self.key, tile_rows_done=i + 1, rows_done=start + n)
        self.rows_written = i + 1

    # ------------------------------------------------------------------ the loop

    def resume_row(self, first: int) -> int:
        """The tile row to recompute from when the rows before ``first`` are on disk.

        Rows already written may still receive overlap from earlier tile rows:
        those tile rows go into the blender again (their finished rows are
        discarded) so the result equals an uninterrupted run's.
        """
        if first == 0:
            return 0
        grid, target = self.grid, self.grid.row_starts[first]
        return next(j for j in range(first) if grid.row_starts[j] + grid.row_height(j) > target)

    def place(
        self,
        part: list[Tile],
        values: list[torch.Tensor],
        blender: StreamBlender,
        first: int,
        writer: BackgroundWriter[Any],
    ) -> int:
        """Blend one tile row's tiles of a batch, encode what they finish, queue a finished row band.

        Returns the tiles counted as new work (0 for a row recomputed before ``first``).
        """
        i = part[0].index[0]
        block = blender.add(part, *values)
        if i < first:  # recomputed only for its overlap into the first new row
            return 0
        n = block.weights.shape[0]  # rows this tile row finishes (the same for each of its blocks)
        if part[0].index[1] == 0:
            self._rows = self.new_rows(n)
        if n:
            self.encode(block, self._rows)
        if part[-1].index[1] == self.grid.shape[1] - 1:
            writer.put((i, block.row, n, self._rows))
        return len(part)

    def run(self, first: int) -> Generator[TileProgress, None, None]:
        """Tile rows ``first`` … last: yields :class:`TileProgress` after every batch of tiles."""
        grid = self.grid
        n_rows, per_row = grid.shape
        start_row = self.resume_row(first)
        channels = self.k + 1 + int(self.opts.uncertainty)
        blender = StreamBlender(grid, channels, self.opts.blend, start_row=start_row, device=self.seg.device)
        self.rows_written = first
        tiles = first * per_row
        writer: BackgroundWriter = BackgroundWriter(self.write, depth=2)
        batches = prefetch(self.batches(start_row), self.read_ahead())
        try:
            yield TileProgress(tiles, len(grid), first, n_rows)
            for parts, batch, valid in batches:
                out = self.infer(parts[0][0], batch, valid)
                offset = 0
                for part in parts:  # one tile row's share of the batch each
                    values = [group[offset : offset + len(part)] for group in out]
                    offset += len(part)
                    if part[0].index[0] >= start_row:  # (a batch may reach back before the resumed rows)
                        tiles += self.place(part, values, blender, first, writer)
                # blended: let go of the batch's probabilities before the next batch's forward pass
                del out, values
                yield TileProgress(tiles, len(grid), self.rows_written, n_rows)
            writer.close()
            yield TileProgress(tiles, len(grid), self.rows_written, n_rows)
        finally:
            batches.close()  # stops the reader thread
            writer.close(raise_errors=False)  # finishes the queued bands: they stay for a rerun
