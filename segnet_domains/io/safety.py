"""Path safety for every front end: never destroy or corrupt what a user owns.

One module holds the rules every command (CLI, napari, web, pipelines) checks
*before any work*, so a refusal costs nothing and leaves nothing behind:

* :func:`check_input` — an input is a regular file; a folder, a named pipe
  (FIFO), a device or a socket is named for what it is (and never opened, so a
  FIFO cannot hang the command).
* :func:`check_outputs` — outputs never replace an input, the checkpoint,
  another output of the same run, a folder or a file that is not ours; an
  existing output is replaced only with ``force`` and only when it is of our
  own kind; the format is chosen by the extension or refused; the folder an
  output goes to exists and is writable (read-only file systems included).
* :func:`folder_lock` — one run per output folder: an advisory ``flock`` on
  ``DIR/.segnet-domains.lock`` holding the owner's pid, host and start time;
  the kernel releases it when the owner dies, so a lock left by a crash is
  simply taken over.
* :func:`check_claimed_size` — a header's claimed data size against the
  file's real size (and the machine's memory) before anything is allocated.
* :func:`check_number` — a command-line number inside its range.

Every refusal is an :class:`~segnet_domains.errors.InputError`: one line
naming the path and the problem, exit status 2 in the CLI. Writing itself
stays in :mod:`segnet_domains.io.atomic` (temporary name in the same folder,
then an atomic rename).

Example (how a command declares its inputs and outputs)::

    from segnet_domains.io.safety import FileOutput, check_outputs
    check_outputs(
        inputs=[args.image, args.model],
        outputs=[FileOutput(args.out, formats=LABEL_FORMATS, what="label image", ours=is_image_file,
                            option="--out")],
        force=args.force,
    )

New front ends (``serve``, ``export-onnx``, DICOM output …) call the same
function with their own :class:`FileOutput` / :class:`FolderOutput`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import math
import os
import socket
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from segnet_domains.errors import InputError

PathLike = str | os.PathLike[str]

#: Name of the lock file inside a locked output folder.
LOCK_NAME = ".segnet-domains.lock"

#: Deflate (zlib/gzip/PNG) cannot compress better than 1032:1; a header claiming more is lying.
DEFLATE_MAX_RATIO = 1032

#: Suffixes read as one (``mask.nii.gz`` has the format ``.nii.gz``, not ``.gz``).
_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz")


# --------------------------------------------------------------------------- inputs


def file_kind(path: PathLike) -> str | None:
    """What a path is, in words, when it is not a regular file (``None`` for a regular file).

    Uses ``stat`` only: nothing is opened, so a FIFO cannot block.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "not found"
    except NotADirectoryError:
        return "not found (a parent in the path is a file)"
    except PermissionError:
        return "not accessible (permission denied)"
    except OSError as exc:
        return f"not accessible ({exc.strerror or exc})"
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def check_input(path: PathLike, what: str = "file") -> Path:
    """``path`` as a :class:`~pathlib.Path` if it is a readable regular file.

    Args:
        path: the input.
        what: what it should be, for the message (``"checkpoint"``, ``"image"`` …).

    Raises:
        InputError: missing, a folder, a FIFO, a device, a socket, or unreadable.
    """
    path = Path(path)
    kind = file_kind(path)
    if kind == "not found":
        raise InputError(path, f"{what} not found")
    if kind is not None:
        raise InputError(path, kind)
    if not os.access(path, os.R_OK):
        raise InputError(path, f"{what} is not readable (permission denied)")
    return path


def check_claimed_size(
    path: PathLike,
    claimed_bytes: int,
    *,
    description: str,
    compression: str | None = None,
    offset: int = 0,
    memory_bytes: int | None = None,
) -> None:
    """Refuse a header whose claimed data cannot be in the file, or cannot fit in memory.

    Args:
        path: the file.
        claimed_bytes: bytes of data its header declares (decoded).
        description: the claim in words (``"32000×32000×32000 int16"``).
        compression: ``None`` (raw data: the file must hold ``offset +
            claimed_bytes``), ``"deflate"`` (gzip/zlib/PNG: at most
            :data:`DEFLATE_MAX_RATIO`:1) or any other name (only the memory
            bound applies).
        offset: bytes before the data (raw files).
        memory_bytes: bytes the caller will allocate (default ``claimed_bytes``).

    Raises:
        InputError: the claim is larger than the file can hold, or than this
            machine's memory.
    """
    size = os.stat(path).st_size
    if compression is None and size < offset + claimed_bytes:
        raise InputError(
            path,
            f"truncated: the header claims {description} ({human_bytes(claimed_bytes)}) "
            f"but the file holds {human_bytes(max(0, size - offset))} of data",
        )
    if compression == "deflate" and claimed_bytes > DEFLATE_MAX_RATIO * size + (1 << 20):
        raise InputError(
            path,
            f"corrupt header: it claims {description} ({human_bytes(claimed_bytes)}), "
            f"more than a {human_bytes(size)} compressed file can hold",
        )
    need = claimed_bytes if memory_bytes is None else memory_bytes
    total = physical_memory()
    if total and need > total:
        raise InputError(
            path,
            f"too large to load: {description} needs {human_bytes(need)} of memory, "
            f"this machine has {human_bytes(total)}",
        )


def physical_memory() -> int | None:
    """Bytes of RAM of this machine (``None`` where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    """``4096`` → ``"4.0 KB"``."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"  # pragma: no cover


def check_number(
    name: str, value: float, lo: float | None = None, hi: float | None = None, integer: bool = True
) -> None:
    """Refuse a number outside ``[lo, hi]`` (or a non-integer where one is needed).

    Raises:
        InputError: ``"--batch-size must be an integer in [1, 4096] (got 0)"``.
    """
    kind = "an integer" if integer else "a number"
    bounds = _bounds(lo, hi)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        ok = (lo is None or value >= lo) and (hi is None or value <= hi)
    if not ok:
        raise InputError(None, f"{name} must be {kind}{bounds} (got {value!r})")


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo:g}, {hi:g}]"
    if lo is not None:
        return f" ≥ {lo:g}"
    if hi is not None:
        return f" ≤ {hi:g}"
    return ""


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class FileOutput:
    """A file a command writes.

    Attributes:
        path: where.
        what: what it is, for messages (``"label image"``).
        option: the option that named it (``"--out"``), for messages.
        formats: accepted suffixes, lower case (``(".png", ".tif")``); empty: any.
        refused: suffix → why it is refused (``{".jpg": "JPEG is lossy …"}``).
        ours: recognises an existing file of our own kind (only such a file is
            ever replaced); ``None``: any regular file counts as ours.
        exists: ``"force"`` — an existing file is replaced only with ``force``;
            ``"ours"`` — an existing file of our kind is the command's own
            business (resumed, skipped: ``tile``), a foreign one is refused.
        create: its folder may not exist yet (the run creates it).
    """

    path: PathLike
    what: str = "output"
    option: str = "--out"
    formats: tuple[str, ...] = ()
    refused: Mapping[str, str] = field(default_factory=dict)
    ours: Callable[[Path], bool] | None = None
    exists: str = "force"
    create: bool = False


@dataclass(frozen=True)
class FolderOutput:
    """A folder a command writes.

    Attributes:
        path: where.
        what: what it holds, for messages (``"MONAI bundle"``, ``"training run"``).
        option: the option that named it.
        ours: recognises a non-empty folder of our own kind. A non-empty folder
            that is not ours is always refused.
        replace: the folder is replaced whole (``export-bundle``): it must not
            hold an input or be the working folder, and an existing one of ours
            needs ``force``. Otherwise files are written into it and an existing
            folder of ours is fine (``exists`` decides).
        exists: with ``replace=False``: ``"ours"`` (reuse a folder of ours, e.g.
            the demo or ``tile``), ``"force"`` (an earlier folder of ours needs
            ``force`` unless ``resume``), ``"resume"`` (must exist: ``train
            --resume``).
        create: the folder (and missing parents) will be created.
    """

    path: PathLike
    what: str = "output folder"
    option: str = "--out"
    ours: Callable[[Path], bool] | None = None
    replace: bool = False
    exists: str = "ours"
    create: bool = True


Output = FileOutput | FolderOutput


def check_outputs(
    inputs: Iterable[PathLike | None], outputs: Sequence[Output | PathLike], force: bool = False
) -> list[Path]:
    """Check a run's outputs against its inputs and the file system, before any work.

    Args:
        inputs: every file or folder the run reads (images, the checkpoint,
            configs, list files, data roots); ``None`` entries are ignored.
        outputs: what it writes: :class:`FileOutput`, :class:`FolderOutput`,
            or a plain path (a :class:`FileOutput` with default settings).
        force: replacing an existing output is meant (only one of our own kind).

    Returns:
        The output paths (as given, as :class:`~pathlib.Path`).

    Raises:
        InputError: an output that is an input, the same as another output,
            a folder where a file is written (or the reverse), a FIFO/device,
            an existing output without ``force``, a foreign file or non-empty
            folder, an unknown format, or a missing/unwritable destination.
    """
    specs = [o if isinstance(o, FileOutput | FolderOutput) else FileOutput(o) for o in outputs]
    ins = [Path(p) for p in inputs if p is not None and str(p) != ""]
    seen: dict[Path, Output] = {}
    for spec in specs:
        path = Path(spec.path)
        key = _key(path)
        if key in seen:
            other = seen[key]
            raise InputError(
                path, f"{spec.option} and {other.option} name the same file; give them different paths"
            )
        seen[key] = spec
        _check_not_an_input(spec, path, ins)
        if isinstance(spec, FileOutput):
            _check_file_output(spec, path, force)
        else:
            _check_folder_output(spec, path, force)
    return [Path(s.path) for s in specs]


def output_format(path: PathLike) -> str:
    """The format suffix of a path, lower case (``.nii.gz`` kept whole; ``""`` if none)."""
    name = Path(path).name.lower()
    for double in _DOUBLE_SUFFIXES:
        if name.endswith(double):
            return double
    return Path(name).suffix


def _key(path: Path) -> Path:
    """An absolute, symlink-resolved form of ``path`` (the file itself need not exist)."""
    return Path(os.path.abspath(path)).resolve()


def _same(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    return _key(a) == _key(b)


def _inside(child: Path, folder: Path) -> bool:
    try:
        return _key(child).is_relative_to(_key(folder))
    except OSError:
        return False


def _check_not_an_input(spec: Output, path: Path, inputs: Sequence[Path]) -> None:
    for src in inputs:
        if _same(path, src):
            raise InputError(path, f"{spec.option} is also an input of this run; it would be replaced")
        if isinstance(spec, FolderOutput) and spec.replace and _inside(src, path):
            raise InputError(
                path, f"{spec.option} folder holds the input {src}, which replacing it would delete"
            )
    if isinstance(spec, FolderOutput) and spec.replace and _inside(Path.cwd(), path):
        raise InputError(path, f"{spec.option} is the working folder (or holds it); choose a new folder")


def _special(path: Path) -> str | None:
    """Words for a FIFO, device or socket at ``path`` (``None`` otherwise or when missing)."""
    kind = file_kind(path)
    if kind is None or kind.startswith(("not found", "is a folder")):
        return None
    return kind


def _check_file_output(spec: FileOutput, path: Path, force: bool) -> None:
    fmt = output_format(path)
    if fmt in spec.refused:
        raise InputError(path, f"cannot write the {spec.what} as {fmt}: {spec.refused[fmt]}")
    if spec.formats and fmt not in spec.formats:
        shown = fmt or "(no extension)"
        raise InputError(path, f"unknown format {shown} for the {spec.what}; use {', '.join(spec.formats)}")
    special = _special(path)
    if special:
        raise InputError(path, f"{special}; {spec.option} must name a regular file")
    if path.is_dir():
        raise InputError(path, f"is a folder; {spec.option} names the {spec.what} file to write")
    if path.exists():
        mine = spec.ours is None or _safe_call(spec.ours, path)
        if spec.exists == "ours":
            if not mine:
                raise InputError(path, f"exists and is not {_a(spec.what)} of ours; it is left alone")
        elif not force:
            raise InputError(path, f"exists; add --force to replace it ({spec.option})")
        elif not mine:
            raise InputError(
                path, f"exists and is not {_a(spec.what)}; --force replaces only {_a(spec.what)}"
            )
    _check_parent(path, spec.option, create=spec.create)


def _check_folder_output(spec: FolderOutput, path: Path, force: bool) -> None:
    special = _special(path)
    if special:
        raise InputError(path, f"{special}; {spec.option} must name a folder")
    if path.exists() and not path.is_dir():
        raise InputError(path, f"exists and is not a folder ({spec.option} names a folder)")
    if path.is_dir():
        try:
            empty = not any(not _leftover(e.name) for e in path.iterdir())
        except OSError as exc:
            raise InputError(path, f"cannot list the output folder ({exc.strerror})") from None
        if not empty:
            mine = spec.ours is not None and _safe_call(spec.ours, path)
            if not mine:
                raise InputError(
                    path, f"is a non-empty folder that is not {_a(spec.what)}; choose a new or empty folder"
                )
            if spec.replace and not force:
                raise InputError(path, f"holds an earlier {spec.what}; add --force to replace it")
            if not spec.replace and spec.exists == "force" and not force:
                raise InputError(path, f"holds an earlier {spec.what}; add --force to replace it")
        elif spec.exists == "resume":
            raise InputError(path, f"is empty: no {spec.what} to resume")
        if not spec.replace and not os.access(path, os.W_OK | os.X_OK):
            reason = "is on a read-only file system" if _read_only(path) else "is not writable"
            raise InputError(path, f"output folder {reason}")
    elif spec.exists == "resume":
        raise InputError(path, f"not found: no {spec.what} to resume")
    if spec.replace or not path.is_dir():
        _check_parent(path, spec.option, create=spec.create and not spec.replace)


def _a(what: str) -> str:
    return f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"


def _leftover(name: str) -> bool:
    """Our own debris a crash may leave in a folder: a stale lock file, a temporary ``.x.partial`` name."""
    return name == LOCK_NAME or (name.startswith(".") and ".partial" in name)


def _check_parent(path: Path, option: str, create: bool = False) -> None:
    """The folder ``path`` goes into exists (or, with ``create``, can be created) and is writable."""
    parent = Path(os.path.abspath(path)).parent
    if create:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.is_dir():
        if create:
            raise InputError(path, f"cannot create the output folder ({parent} is not a folder)")
        where = "is not a folder" if parent.exists() else "does not exist"
        raise InputError(path, f"output folder {parent} {where}")
    if not os.access(parent, os.W_OK | os.X_OK):
        reason = "is on a read-only file system" if _read_only(parent) else "is not writable"
        raise InputError(path, f"output folder {parent} {reason}")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _safe_call(fn: Callable[[Path], bool], path: Path) -> bool:
    try:
        return bool(fn(path))
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- "is it ours?"


def sniff(path: PathLike, n: int = 16) -> bytes:
    """The first ``n`` bytes of a regular file (``b""`` for anything else)."""
    if file_kind(path) is not None:
        return b""
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def is_image_file(path: PathLike) -> bool:
    """PNG, JPEG, GIF or TIFF by its magic bytes."""
    head = sniff(path)
    return head.startswith(
        (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"II*\x00", b"MM\x00*", b"II+\x00")
    )


def is_tiff_file(path: PathLike) -> bool:
    """A TIFF (or BigTIFF) by its magic bytes."""
    return sniff(path, 4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def is_nifti_file(path: PathLike) -> bool:
    """A NIfTI-1/2 file (``.nii``) or a gzip stream (``.nii.gz``) whose header says NIfTI."""
    import gzip

    head = sniff(path, 2)
    try:
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as fh:
                hdr = fh.read(348)
        else:
            hdr = sniff(path, 348)
    except (OSError, EOFError):
        return False
    return hdr[344:348] in (b"n+1\x00", b"ni1\x00") or hdr[4:8] in (b"n+2\x00", b"ni2\x00")


def is_json_file(path: PathLike, key: str | None = None) -> bool:
    """A JSON object (holding ``key``, when given)."""
    if file_kind(path) is not None:
        return False
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and (key is None or key in data)


def holds_only(names: Iterable[str]) -> Callable[[Path], bool]:
    """A test for a folder whose entries are all among ``names`` (hidden entries allowed).

    Entries may be glob patterns (``"tile-run-*.json"``).
    """
    import fnmatch

    patterns = tuple(names)

    def test(folder: Path) -> bool:
        return all(
            e.name.startswith(".") or any(fnmatch.fnmatch(e.name, p) for p in patterns)
            for e in folder.iterdir()
        )

    return test


# --------------------------------------------------------------------------- one run per folder


def lock_owner(folder: PathLike) -> dict[str, object] | None:
    """What the lock file of ``folder`` says about its owner (``None`` if no readable lock file)."""
    try:
        data = json.loads((Path(folder) / LOCK_NAME).read_text() or "null")
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def folder_lock(folder: PathLike, command: str) -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``folder`` for the duration of a run.

    ``DIR/.segnet-domains.lock`` is ``flock``-ed (non-blocking) and holds
    ``{"pid", "host", "command", "started"}``. The kernel drops the lock when
    its owner exits or is killed, so a lock file left by a crash is stale and
    simply taken over. The file is removed when the run ends.

    Raises:
        InputError: another live run holds the lock (its pid and host named).
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(folder, f"cannot create the lock file ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InputError(folder, f"cannot lock the output folder ({exc.strerror})") from None
            owner = lock_owner(folder) or {}
            who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
            since = f", since {owner['started']}" if owner.get("started") else ""
            raise InputError(
                folder,
                f"in use by another {owner.get('command', 'segnet-domains')} run ({who}{since}); "
                "wait for it to finish or choose another output folder",
            ) from None
        try:  # the file we locked may have been removed by its previous owner meanwhile: retry
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
