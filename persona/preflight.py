"""Check where a run will write before it loads a model: a bad output path fails in a second, not after the work.

An output path fails here when it (or the first existing folder above it) cannot take the
file: a directory passed where a file goes, a file where a folder goes (`out.csv/x.csv`),
a folder this user cannot write, a read-only file system, or an output another live
process is writing (its `<path>.lock`, see `persona.locks`). Settings conflicts with a
finished output are the caller's check (`persona.fingerprint.check_finished`), also before
any model loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from persona.locks import check_unlocked

FIX = "choose a writable output folder"


def _nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists (what a write would have to create folders in)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def _writable(folder: Path) -> bool:
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        return not os.statvfs(folder).f_flag & os.ST_RDONLY  # root passes os.access even on a read-only mount
    except OSError:
        return True


def check_output_path(path: str | os.PathLike | None, *, folder: bool = False) -> None:
    """Raise `ValueError` (one line naming the path and the fix) if `path` cannot be written.

    `folder=True` for an output folder (a vector or training directory), else an output file.
    None is accepted and ignored (an optional output that was not given).
    """
    if path is None:
        return
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise ValueError(f"cannot write into {path}: it is a file, not a folder; {FIX}")
        if not folder and path.is_dir():
            raise ValueError(f"cannot write {path}: it is an existing folder, not a file; give a file path")
    existing = _nearest_existing(path if folder else path.parent)
    if not existing.is_dir():
        raise ValueError(f"cannot write {path}: {existing} is a file, not a folder; {FIX}")
    if not _writable(existing):
        raise ValueError(f"cannot write {path}: {existing} is not writable (permissions or read-only disk); {FIX}")
    check_unlocked(path)


def check_output_paths(
    files: Iterable[str | os.PathLike | None] = (), folders: Iterable[str | os.PathLike | None] = ()
) -> None:
    """`check_output_path` for each output file and folder (None entries are skipped)."""
    for path in files:
        check_output_path(path)
    for path in folders:
        check_output_path(path, folder=True)
