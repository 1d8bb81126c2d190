"""Atomic file writers and small readers shared by every entry point.

Every result file is written to a temporary sibling and renamed into place, so an
interrupted run never leaves a half-written CSV, JSON or tensor behind.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch


def _current_umask() -> int:
    """The process umask (read once: setting it back and forth per write would race other threads)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give a new file; mkstemp's is always 0600


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (temporaries and locks of dead ones are stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Delete `.name.<pid>.*.tmp` siblings left by killed writers (a live writer's are kept)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` on success only.

    The temporary file is hidden (`.name.<pid>.XXXX.tmp`), so no reader globbing `*.csv` or
    `*.pt` ever sees a half-written file; ones left by a killed process go on the next write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)  # results are shared files, not secrets: the umask decides, as for open()
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    _remove_stale_temporaries(path)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as JSON; a NaN or inf is refused (a bare `NaN` is not JSON, and NaN != NaN breaks reruns)."""
    try:
        text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError as err:
        raise ValueError(
            f"{path}: refusing to write a NaN or inf number to JSON ({err}); nothing was written"
        ) from None
    write_text(path, text + "\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The rows of a JSONL file (blank lines skipped); a malformed line fails naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}, line {number}: not valid JSON ({err.msg} at column {err.colno}); "
                    "each line must hold one JSON object"
                ) from None
    return rows


def write_csv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write `df` atomically, quoting as little as the text allows.

    Minimal quoting (pandas' default, the original study's format) leaves a bare carriage
    return in an answer unquoted, and readers then split the row there; a frame holding one
    gets every text cell quoted instead (numbers stay unquoted).
    """
    text = df.select_dtypes(exclude="number")
    bare_cr = any(text[c].astype(str).str.contains("\r", regex=False).any() for c in text.columns)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, quoting=csv.QUOTE_NONNUMERIC if bare_cr else csv.QUOTE_MINIMAL)


def save_tensor(path: str | os.PathLike, tensor: torch.Tensor) -> None:
    with atomic_path(path) as tmp:
        torch.save(tensor, tmp)


def read_table(path: str | os.PathLike, required: tuple[str, ...] = (), *, text: bool = False) -> pd.DataFrame:
    """Read a CSV the one way every entry point does; fail naming the file and any missing column.

    Answers are text: only an empty cell is missing, so an answer that says `None`, `NA` or
    `null` stays that string (pandas' default would turn it into NaN in some readers and not
    others). Numeric columns still parse as numbers; `text=True` keeps every cell as the
    string on disk (for rewriting a file with only new columns added).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist (check the path)")
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[] if text else [""], dtype=str if text else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; found {list(df.columns)}. "
            "Is this an output of `python -m eval.eval_persona`?"
        )
    return df
