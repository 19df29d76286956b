"""Write outputs under a temporary name and rename them when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from segnet_domains.errors import InputError


def temporary_path(path: str | Path) -> Path:
    """The temporary sibling of ``path`` used while it is being written.

    It keeps the final suffix(es) so format-sniffing writers (GDAL, nibabel,
    imageio) still see ``.tif`` / ``.nii.gz`` / ``.png``.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.partial{''.join(path.suffixes)}")


@contextlib.contextmanager
def atomic_output(path: str | Path, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``path``, on failure delete it.

    Nothing half-written is ever visible under the final name. Works for files
    and, with ``folder=True``, directories (a directory is replaced whole). A
    file is never written over an existing directory: that is refused before
    anything is written (the front ends' checks live in
    :mod:`segnet_domains.io.safety`; this is the last line of defence).

    Raises:
        InputError: ``path`` is an existing folder and ``folder`` is False.

    Example:
        >>> with atomic_output("mask.nii.gz") as tmp:  # doctest: +SKIP
        ...     nib.save(img, tmp)
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink() and not folder:
        raise InputError(path, "is a folder; a file is never written over it")
    tmp = temporary_path(path)
    _remove(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp} was not written")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
