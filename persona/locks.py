"""One writer per output: `<path>.lock` holds the writer's pid and host while it works.

Without it two runs writing the same CSV, vector set or training folder both finish and the
last rename silently wins. The lock file is created atomically (`O_CREAT | O_EXCL`); a second
process is refused naming the holder. A lock left by a killed process (its pid is dead on
this host) is taken over; one held from another host is refused, since its pid cannot be
checked from here. The lock is removed on exit, whatever happens.

    with output_lock("output/evil.csv"):   # creates output/evil.csv.lock
        ...                                 # read, compute, write output/evil.csv
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from persona.errors import InputError
from persona.io import pid_alive

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
_HALF_WRITTEN_GRACE_S = 10.0  # a lock without readable contents younger than this is being created


class OutputLocked(InputError):
    """Another live process is writing the same output."""


def lock_path(path: str | os.PathLike) -> Path:
    """`<path>.lock`: beside a file, or beside a folder (never inside it)."""
    return Path(f"{os.fspath(path).rstrip('/')}{LOCK_SUFFIX}")


def _read_holder(lock: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def _is_stale(lock: Path, holder: dict[str, Any] | None) -> bool:
    if holder is None:  # a killed process can leave it empty; a live one fills it at once
        try:
            return time.time() - lock.stat().st_mtime > _HALF_WRITTEN_GRACE_S
        except FileNotFoundError:
            return True
    return holder.get("host") == socket.gethostname() and not pid_alive(holder["pid"])


def _refusal(path: str | os.PathLike, lock: Path, holder: dict[str, Any] | None) -> OutputLocked:
    if holder is None:
        return OutputLocked(f"{path} is locked by {lock}, which another process is creating: wait and rerun")
    pid, host = holder["pid"], holder.get("host", "?")
    if host != socket.gethostname():
        return OutputLocked(
            f"{path} is being written by pid {pid} on host {host} (lock {lock}): wait for it to finish, "
            f"or delete {lock} if that process is gone"
        )
    return OutputLocked(
        f"{path} is being written by another process (pid {pid}, lock {lock}): wait for it to finish or stop it"
    )


def _try_create(lock: Path) -> bool:
    """Create the lock holding this process's pid and host; False when it exists."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, f)
    return True


def check_unlocked(path: str | os.PathLike) -> None:
    """Raise `OutputLocked` if a live process holds the lock of `path` (a preflight check; takes nothing)."""
    lock = lock_path(path)
    if lock.exists():
        holder = _read_holder(lock)
        if not _is_stale(lock, holder):
            raise _refusal(path, lock, holder)


def _make_parents(folder: Path) -> list[Path]:
    """Create `folder` and missing parents; the ones created, deepest first (for `release` to remove)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def acquire(path: str | os.PathLike) -> Path:
    """Take the lock of `path` (see `output_lock`); the caller must `release` it."""
    lock = lock_path(path)
    for _ in range(3):  # a stale lock is removed and the creation retried; a racing taker may win
        if _try_create(lock):
            return lock
        holder = _read_holder(lock)
        if not _is_stale(lock, holder):
            raise _refusal(path, lock, holder)
        log.warning("taking over %s, left by pid %s (no longer running)", lock, holder and holder["pid"])
        if _read_holder(lock) == holder:  # not replaced meanwhile by another taker
            lock.unlink(missing_ok=True)
    raise _refusal(path, lock, _read_holder(lock))


def release(lock: Path, made: Sequence[Path] = ()) -> None:
    """Remove a lock this process holds (one another process took over is left alone), then the
    folders in `made` that are still empty: a run that failed early leaves nothing behind."""
    holder = _read_holder(lock)
    if holder is not None and holder["pid"] == os.getpid() and holder.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)
    for folder in made:
        try:
            folder.rmdir()
        except OSError:  # holds the run's outputs (or another writer's)
            break


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold `<path>.lock` for the block: refuse (`OutputLocked`, naming the holder's pid) when a live
    process holds it, take over a stale one, and remove it on exit, also on error or Ctrl-C.

    Folders created to hold the lock are removed again on exit when the block left them empty.
    """
    made = _make_parents(lock_path(path).parent)
    try:
        lock = acquire(path)
    except BaseException:
        release(lock_path(path), made)
        raise
    try:
        yield lock
    finally:
        release(lock, made)
