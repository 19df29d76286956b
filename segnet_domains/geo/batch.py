"""Many scenes in one run: inputs from paths, globs or list files; resume; a JSON summary.

:func:`run_batch` tiles every scene with :func:`~segnet_domains.geo.tiler.attempt_scene`
in this process (one model, a bar per scene and one overall) or fans them out
over a dask.distributed cluster (:mod:`segnet_domains.geo.distributed`).
Finished scenes are skipped, interrupted ones continue, a broken scene is
recorded and the others go on; the run ends with
``DIR/tile-run-<UTC time>.json`` listing every scene, its status and time.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from segnet_domains.errors import InputError
from segnet_domains.geo.distributed import run_distributed
from segnet_domains.geo.outputs import OutputPaths
from segnet_domains.geo.scene import open_scene
from segnet_domains.geo.sources import is_remote
from segnet_domains.geo.tiler import SceneResult, TileOptions, attempt_scene, is_tile_output
from segnet_domains.inference import SegmenterSpec
from segnet_domains.io.atomic import atomic_output
from segnet_domains.io.safety import (
    FileOutput,
    FolderOutput,
    Output,
    check_outputs,
    file_kind,
    folder_lock,
    is_json_file,
)

#: Suffixes of text files that list scene paths (one per line, ``#`` comments).
LIST_SUFFIXES = (".txt", ".lst", ".list")


@dataclass
class RunSummary:
    """The outcome of a batch run (written as JSON)."""

    started: str
    model: str
    out_dir: str
    options: dict[str, Any]
    scenes: list[SceneResult] = field(default_factory=list)
    seconds: float = 0.0
    path: Path | None = None

    @property
    def failed(self) -> list[SceneResult]:
        return [s for s in self.scenes if s.status == "failed"]

    def counts(self) -> dict[str, int]:
        """Scenes per status, in the order done, resumed, skipped, failed, interrupted."""
        order = ("done", "resumed", "skipped", "failed", "interrupted")
        return {k: n for k in order if (n := sum(s.status == k for s in self.scenes))}

    def to_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "model": self.model,
            "out_dir": self.out_dir,
            "options": self.options,
            "counts": self.counts(),
            "scenes": [s.to_dict() for s in self.scenes],
        }


def expand_scenes(inputs: Sequence[str | Path], _lists: tuple[Path, ...] = ()) -> list[Path | str]:
    """Scene paths from paths, glob patterns and list files (``.txt``: one path per line).

    Relative paths in a list file are relative to the list file. Order is
    kept and duplicates dropped. A pattern that matches nothing is kept as
    given, so it is reported as a missing scene. URLs and ``/vsi…`` paths
    (remote rasters, STAC items) are kept as strings, as given.

    Raises:
        InputError: a list file that is not text, or that lists itself
            (directly or through other lists: the chain is named).
    """
    out: list[Path | str] = []
    for item in inputs:
        text = str(item)
        p = Path(text)
        if is_remote(text):
            out.append(text)
            continue
        kind = file_kind(p)
        if (
            p.suffix.lower() in LIST_SUFFIXES
            and kind is not None
            and not kind.startswith(("not found", "is a folder"))
        ):
            raise InputError(p, kind)
        if p.suffix.lower() in LIST_SUFFIXES and kind is None:
            key = p.resolve()
            if key in _lists:
                chain = " → ".join(q.name for q in (*_lists, key))
                raise InputError(p, f"scene lists include each other in a cycle ({chain})")
            for line in _list_lines(p):
                q = Path(line).expanduser()
                entry = line if is_remote(line) else q if q.is_absolute() else p.parent / q
                out.extend(expand_scenes([entry], (*_lists, key)))
        elif glob.has_magic(text) and not p.exists():
            matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            out.extend(Path(m) for m in matches) if matches else out.append(p)
        else:
            out.append(p.expanduser())
    seen: set[Path | str] = set()
    unique = []
    for p in out:
        key = p.resolve() if isinstance(p, Path) and p.exists() else p
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _list_lines(path: Path) -> list[str]:
    """The paths a list file names (``#`` comments and blank lines dropped)."""
    try:
        raw = path.read_bytes()
        if b"\x00" in raw:
            raise UnicodeDecodeError("utf-8", raw[:1], 0, 1, "binary")
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(path, "scene list is not a text file (one path per line expected)") from None
    except OSError as exc:
        raise InputError(path, f"cannot read the scene list ({exc.strerror})") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [line for line in lines if line]


def list_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The list files among ``inputs`` (they are inputs too: never an output)."""
    return [Path(str(i)) for i in inputs if Path(str(i)).suffix.lower() in LIST_SUFFIXES]


def plan_outputs(
    scenes: Sequence[Path], out_dir: Path, options: TileOptions, summary: str | Path | None
) -> list[Output]:
    """Every file a run will write, for :func:`~segnet_domains.io.safety.check_outputs`.

    Scenes that cannot be opened are left out (they are reported when tiled).
    """
    outputs: list[Output] = [
        FolderOutput(out_dir, "tiling output folder", "--out-dir", exists="ours", ours=_any)
    ]
    if out_dir.is_dir():
        stems: set[str] = set()
        for s in scenes:
            try:
                stem = open_scene(s).stem
            except InputError:
                continue
            if stem in stems:
                continue  # a name clash: reported as a failed scene
            stems.add(stem)
            for p in OutputPaths.for_scene(out_dir, stem, options.proba, options.uncertainty).all():
                outputs.append(
                    FileOutput(
                        p,
                        "tiling output",
                        f"output of {Path(str(s)).name}",
                        exists="ours",
                        ours=is_tile_output,
                    )
                )
    if summary is not None:
        inside = Path(os.path.abspath(summary)).parent == Path(os.path.abspath(out_dir))
        outputs.append(
            FileOutput(summary, "run summary", "--summary", (".json",), ours=_is_summary, create=inside)
        )
    return outputs


def _any(_: Path) -> bool:
    return True  # tile adds files to any folder; each file it writes is checked on its own


def _is_summary(path: Path) -> bool:
    return is_json_file(path, key="scenes")


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the output folder if needed; fail early when it cannot be written.

    Raises:
        InputError: not a folder, cannot be created, or not writable.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "output path exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(out, f"cannot create the output folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(out, "output folder is not writable")
    return out


def _check_names(scenes: Sequence[Path | str], assets: Sequence[str] | None) -> dict[Path | str, str]:
    """Scenes whose output name another scene already takes → the error."""
    owners: dict[str, Path | str] = {}
    clashes: dict[Path | str, str] = {}
    for s in scenes:
        try:
            stem = open_scene(s, assets).stem
        except InputError:
            continue  # reported when it is tiled
        if stem in owners:
            clashes[s] = f"{s}: same output name '{stem}' as {owners[stem]}; tile it into another --out-dir"
        else:
            owners[stem] = s
    return clashes


def run_batch(
    spec: SegmenterSpec,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    options: TileOptions | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    summary: str | Path | None = None,
) -> RunSummary:
    """Tile every scene of ``inputs`` into ``out_dir``; write the run's JSON summary.

    Args:
        spec: the checkpoint and how to run it.
        inputs: paths, glob patterns and list files.
        out_dir: output folder (created if missing).
        options: :class:`~segnet_domains.geo.tiler.TileOptions`.
        workers: run on a local Dask cluster of this many worker processes.
        scheduler: run on an existing Dask cluster (``tcp://HOST:PORT``).
        progress: tqdm bars (overall, and per scene when local).
        summary: where to write the JSON (default ``out_dir/tile-run-<time>.json``).

    Returns:
        The :class:`RunSummary` (``.failed`` lists broken scenes).

    Raises:
        InputError: no scenes, a scene list in a cycle, an output that would
            replace an input or a foreign file, an unusable output folder or
            summary path, or a folder another run holds (all before any work).
    """
    options = options or TileOptions()
    scenes = expand_scenes(inputs)
    if not scenes:
        raise InputError(None, "no scenes given")
    ins = [*scenes, *list_files(inputs), spec.checkpoint]
    check_outputs(ins, plan_outputs(scenes, Path(out_dir), options, summary), force=options.force)
    out = prepare_out_dir(out_dir)
    with folder_lock(out, "tile"):
        return _run_locked(spec, scenes, out, options, workers, scheduler, progress, summary)


def _run_locked(
    spec: SegmenterSpec,
    scenes: Sequence[Path],
    out: Path,
    options: TileOptions,
    workers: int | None,
    scheduler: str | None,
    progress: bool,
    summary: str | Path | None,
) -> RunSummary:
    """:func:`run_batch` once the output folder is checked and locked."""
    now = _dt.datetime.now(_dt.UTC)
    result = RunSummary(
        started=now.isoformat(timespec="seconds"),
        model=str(spec.checkpoint),
        out_dir=str(out),
        options={**asdict(options), "workers": workers, "scheduler": scheduler, **asdict(spec)},
    )
    t0 = time.perf_counter()
    clashes = _check_names(scenes, options.assets)
    todo = [s for s in scenes if s not in clashes]
    failed_early = {s: SceneResult(scene=str(s), status="failed", error=e) for s, e in clashes.items()}
    done: list[SceneResult] = []  # filled as scenes finish, so an interrupted run still reports them
    try:
        if workers or scheduler:
            run_distributed(
                spec, todo, out, options, done, workers=workers, scheduler=scheduler, progress=progress
            )
        else:
            _run_local(spec, todo, out, options, done, progress)
    finally:
        by_scene = {r.scene: r for r in done}
        result.scenes = [
            failed_early.get(s) or by_scene.get(str(s)) or SceneResult(scene=str(s), status="interrupted")
            for s in scenes
        ]
        result.seconds = time.perf_counter() - t0
        result.path = _write_summary(result, Path(summary) if summary else out / _summary_name(now))
    return result


def _summary_name(now: _dt.datetime) -> str:
    return f"tile-run-{now.strftime('%Y%m%dT%H%M%S.%f')}Z.json"


def _write_summary(result: RunSummary, path: Path) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=2))
    return path


def _run_local(
    spec: SegmenterSpec,
    scenes: Sequence[Path | str],
    out: Path,
    options: TileOptions,
    results: list[SceneResult],
    progress: bool,
) -> None:
    segmenter = spec.build()
    bar = tqdm(total=len(scenes), desc="scenes", unit="scene", position=0, disable=not progress)
    try:
        for scene in scenes:
            results.append(
                attempt_scene(
                    segmenter, scene, out, options, progress=progress, position=1 if progress else None
                )
            )
            bar.set_postfix_str(f"{str(scene).rstrip('/').rsplit('/', 1)[-1]}: {results[-1].status}")
            bar.update(1)
    finally:
        bar.close()
