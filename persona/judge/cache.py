"""On-disk judgment cache, so rerunning an evaluation costs no judge calls.

One SQLite file (`<cache_dir>/judge_cache.sqlite`) maps (backend, model, full prompt, and
for a judge server its base URL) to a JSON value: a score, a raw statistic, or `null` for a
judge that genuinely had no score (a refusal). Failed calls are never stored, so a rerun retries them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import torch

from persona.settings import cache_dir

CACHE_FILE = "judge_cache.sqlite"


def cache_key(backend: str, model: str, prompt: str, server: str | None = None) -> str:
    """The row key; `server` (a judge server's base URL) keeps two servers serving one model name apart.

    Without a server the key is what it always was, so earlier OpenAI API judgments stay valid.
    """
    parts = [backend, model, prompt] if server is None else [backend, model, prompt, server.rstrip("/")]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


class JudgeCache:
    """A thread-safe key-value store over SQLite (WAL, so parallel runs can share it)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / CACHE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, backend TEXT, model TEXT, value TEXT)"
            )

    def get(self, backend: str, model: str, prompt: str, server: str | None = None) -> tuple[bool, Any]:
        """(True, value) on a hit (value may be None), (False, None) on a miss."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM judgments WHERE key = ?", (cache_key(backend, model, prompt, server),)
            ).fetchone()
        return (False, None) if row is None else (True, json.loads(row[0]))

    def put(self, backend: str, model: str, prompt: str, value: Any, server: str | None = None) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?)",
                (cache_key(backend, model, prompt, server), backend, model, json.dumps(value)),
            )


class NoCache:
    """The `--no_judge_cache` stand-in: never hits, stores nothing."""

    def get(self, backend: str, model: str, prompt: str, server: str | None = None) -> tuple[bool, Any]:
        return False, None

    def put(self, backend: str, model: str, prompt: str, value: Any, server: str | None = None) -> None:
        pass


def open_cache(enabled: bool = True) -> JudgeCache | NoCache:
    return JudgeCache() if enabled else NoCache()


def model_identity(lm: Any) -> str:
    """`<name>@<weights digest>` for a LoadedModel: a checkpoint retrained in place gets new keys.

    The digest hashes a strided sample of every parameter (cheap even for large models).
    """
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in lm.model.named_parameters():
            flat = param.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 16)][:16].float().cpu()
            digest.update(name.encode())
            digest.update(sample.numpy().tobytes())
    return f"{lm.name}@{digest.hexdigest()[:16]}"
