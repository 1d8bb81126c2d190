"""Settings read lazily from the environment and a `.env` file.

Importing never fails for a missing key: only the code path that needs one calls
`require(...)`, which names the variable to set. Values are never printed or logged.
"""

from __future__ import annotations

import os
from pathlib import Path

from persona.errors import InputError

KNOWN_KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_TOKEN", "WANDB_PROJECT")
_loaded = False


class MissingSettingError(InputError):
    """A code path needs an environment variable that is not set."""


def _dotenv_path() -> Path:
    return Path(os.environ.get("PERSONA_DOTENV", Path.cwd() / ".env"))


def _load_dotenv() -> None:
    """Fill unset variables from `.env` (KEY=VALUE lines); the environment wins."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    path = _dotenv_path()
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip().strip("'\"")
        if key and value and key not in os.environ:
            os.environ[key] = value


def get(name: str, default: str | None = None) -> str | None:
    """The value of `name` from the environment or `.env`, or `default`."""
    _load_dotenv()
    value = os.environ.get(name)
    return value if value else default


def require(name: str, purpose: str) -> str:
    """The value of `name`; a one-line error naming the variable when it is unset."""
    value = get(name)
    if not value:
        raise MissingSettingError(
            f"{name} is not set: {purpose} needs it. Export {name}=... or add it to .env (see .env.example)."
        )
    return value


def cache_dir() -> Path:
    """Where converted models and judge caches live: $PERSONA_CACHE or ~/.cache/persona."""
    return Path(get("PERSONA_CACHE") or Path.home() / ".cache" / "persona")
