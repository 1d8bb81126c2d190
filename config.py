"""Project settings (compatibility entry point): see `persona.settings`.

`from config import get, require` works from any script; nothing here reads a key
until asked, and keys are never printed.
"""

from persona.settings import KNOWN_KEYS, MissingSettingError, cache_dir, get, require

__all__ = ["KNOWN_KEYS", "MissingSettingError", "cache_dir", "get", "require"]
