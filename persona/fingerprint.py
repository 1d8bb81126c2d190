"""Settings fingerprints of finished outputs, so a rerun never mixes results made differently.

A resumable step records what produced each output (input file contents, model, vector,
layer, type, thresholds, code version). A rerun skips an output only when the record
matches what it would compute now; when it differs the step stops and says which settings
differ, and `--overwrite` recomputes. Models are identified without loading them: for a
local folder by the size and the first and last bytes of every weight file (a model
retrained or replaced in place changes them), for a Hub id or the embedded model by name.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from persona.errors import InputError

EDGE_BYTES = 1 << 16  # bytes read at each end of a weight file
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


class SettingsMismatch(InputError):
    """A finished output was made with other settings than this run's."""


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def tensor_sha256(tensor: Any) -> str:
    """Digest of a tensor's float32 values (the same vector saved twice gives the same digest)."""
    import torch

    return bytes_sha256(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())


def file_sha256(path: str | os.PathLike) -> str:
    """Digest of a whole file (inputs and vectors: small)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def texts_sha256(texts: Iterable[Any]) -> str:
    """Digest of a sequence of cells (None and text kept apart)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(b"\x00" if text is None else b"\x01" + str(text).encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


def _edges_sha256(path: Path) -> str:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(EDGE_BYTES)
        f.seek(max(size - EDGE_BYTES, 0))
        tail = f.read(EDGE_BYTES)
    return bytes_sha256(str(size).encode() + head + tail)


def _model_folder(path: Path) -> Path:
    """The folder `load_model` reads for a local spec: itself, or its newest checkpoint-N."""
    from persona.models import newest_checkpoint

    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        return path
    return newest_checkpoint(path) or path


def model_ref(spec: str | None) -> dict[str, Any] | None:
    """A model's identity without loading it: its spec, plus weight-file digests for a local folder."""
    if spec is None:
        return None
    path = Path(spec).expanduser()
    if not path.is_dir():
        return {"spec": spec}
    folder = _model_folder(path)
    weights = {
        str(p.relative_to(path)): _edges_sha256(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES
    }
    return {"spec": spec, "weights": weights}


def code_version() -> str:
    from persona import __version__

    return __version__


def differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The keys whose values differ (or that only one side has), sorted."""
    return [key for key in sorted(set(saved) | set(wanted)) if saved.get(key) != wanted.get(key)]


def describe(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    """`key: saved -> now` for every differing key, short enough for one line."""

    def short(value: Any) -> str:
        text = str(value)
        return text if len(text) <= 60 else text[:57] + "..."

    return "; ".join(
        f"{key}: {short(saved.get(key))} -> {short(wanted.get(key))}" for key in differences(saved, wanted)
    )


def record_path(output: str | os.PathLike) -> Path:
    """`<output>.settings.json`: the settings a finished output was made with."""
    return Path(f"{output}.settings.json")


def read_record(output: str | os.PathLike) -> dict[str, Any] | None:
    """The settings record of a finished output, or None (made before records, or unreadable)."""
    path = record_path(output)
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def check_finished(what: str, saved: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """True when a finished output's record matches `wanted`; False when it has none (made before records).

    Raises SettingsMismatch naming what differs when it was made with other settings.
    """
    if saved is None:
        return False
    if differences(saved, wanted):
        raise SettingsMismatch(
            f"{what} exists but was made with other settings ({describe(saved, wanted)}); "
            "pass `overwrite` to recompute it, or choose another output"
        )
    return True
