"""Generation with vLLM, unsteered and steered, behind the interface of `persona.generation.HFBackend`.

Steering runs inside vLLM's own forward pass (`persona.vllm_steering`: hooks that steer the
flattened token batch at exactly the positions `persona.steering` would). The hooks need the
model in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`) and eager execution
(`enforce_eager=True`; compiled graphs skip Python hooks). Prefix caching is off: a cached
prompt block computed under another request's `prompt`/`all` steering would be reused as is.
Anything this backend cannot steer exactly goes to the HF backend with a logged reason.
Sampled answers come from vLLM's sampler with one seed per request (batch-independent, but
not the same draws as the HF sampler); greedy answers match HF's up to floating-point ties.
`make_backend` chooses between the backends (what `--backend` calls).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from persona.generation import GenerationBackend, HFBackend, SteerFactory
from persona.judge.cache import model_identity
from persona.models import RANDOM_PREFIX, LoadedModel, model_dir_once, newest_checkpoint
from persona.sampling import SamplingParams
from persona.settings import cache_dir
from persona.steering import Steer, check_steers
from persona.vllm_steering import ROW_KEY, steering_in_vllm, unsteerable_reason

log = logging.getLogger(__name__)

BACKENDS = ("auto", "hf", "vllm")


class VLLMUnavailable(RuntimeError):
    """vLLM cannot serve this run (not installed, or built for another device)."""


def vllm_unusable_reason(device: torch.device) -> str | None:
    """Why vLLM cannot generate on `device` here, or None when it can."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (CPU: `make test-vllm` builds .venv-vllm; CUDA: `pip install vllm`)"
    from vllm.platforms import current_platform

    built_for = str(current_platform.device_type)
    if built_for != device.type:
        return f"the installed vLLM runs on {built_for!r} but the model is on {device.type!r} (`device`)"
    return None


def default_memory_fraction(device: torch.device) -> float:
    """vLLM's `gpu_memory_utilization`: 0.25 on CPU (higher fails there); 0.6 on CUDA, which leaves room
    for the HF copy of the model that capture, judging and the fallback use."""
    return 0.25 if device.type == "cpu" else 0.6


# ---------------------------------------------------------------- the model directory vLLM loads


def _merges_adapter(spec: str) -> bool:
    """True when `load_model(spec)` merges a LoRA adapter (the weights exist on disk only as base + adapter)."""
    path = Path(spec).expanduser()
    if not path.is_dir():
        return False
    checkpoint = path if (path / "adapter_config.json").is_file() else newest_checkpoint(path)
    return checkpoint is not None and (checkpoint / "adapter_config.json").is_file()


def vllm_model_dir(lm: LoadedModel) -> Path:
    """A local HF directory holding exactly `lm`'s weights: its own folder when it was loaded as is,
    otherwise (merged LoRA, random weights, Hub id) a copy saved once under the cache, keyed by the weights."""
    source = Path(str(getattr(lm.model.config, "_name_or_path", "") or "")).expanduser()
    if (source / "config.json").is_file() and not lm.name.startswith(RANDOM_PREFIX) and not _merges_adapter(lm.name):
        return source
    key = hashlib.sha256(model_identity(lm).encode()).hexdigest()[:16]

    def save(folder: Path) -> None:
        log.info("saving %s for vLLM (once)", lm.name)
        lm.model.save_pretrained(folder)
        lm.tokenizer.save_pretrained(folder)

    return model_dir_once(cache_dir() / "vllm-models" / key, save)


# ---------------------------------------------------------------- the backend

_ENGINES: dict[tuple, Any] = {}


def _engine(path: str, dtype: str, memory: float, max_model_len: int | None) -> Any:
    """One vLLM engine per (weights, settings) per process: sweeps and pipelines that build several
    backends for one model start it once."""
    key = (path, dtype, memory, max_model_len)
    if key not in _ENGINES:
        # Steering hooks must reach the model: keep vLLM's engine core in this process.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import LLM

        threads = torch.get_num_threads()
        _ENGINES[key] = LLM(
            model=path,
            tokenizer=path,
            dtype=dtype,
            enforce_eager=True,
            gpu_memory_utilization=memory,
            enable_prefix_caching=False,
            seed=0,
            max_model_len=max_model_len,
        )
        # vLLM drops torch to one CPU thread "for serving"; this process also judges and captures with torch.
        torch.set_num_threads(threads)
    return _ENGINES[key]


class VLLMBackend:
    """`generate(prompts, params, seeds, steer_factory)` on a vLLM engine built lazily from `lm`'s weights.

    `lm` (the HF model) stays loaded: it validates steers, tokenizes exactly as the HF backend
    does (no added special tokens), decodes the answers, and serves as the fallback.
    """

    def __init__(
        self,
        lm: LoadedModel,
        *,
        batch_size: int = 16,
        gpu_memory_utilization: float | None = None,
        max_model_len: int | None = None,
        fallback: HFBackend | None = None,
    ) -> None:
        reason = vllm_unusable_reason(lm.device)
        if reason is not None:
            raise VLLMUnavailable(reason)
        self.lm = lm
        self.fallback = fallback or HFBackend(lm, batch_size)
        self.memory = gpu_memory_utilization or default_memory_fraction(lm.device)
        self.max_model_len = max_model_len
        self._llm: Any = None

    @property
    def llm(self) -> Any:
        """The engine, started on first use (tens of seconds on CPU) and shared by backends with the same settings."""
        if self._llm is None:
            path = str(vllm_model_dir(self.lm))
            dtype = str(self.lm.model.dtype).removeprefix("torch.")
            self._llm = _engine(path, dtype, self.memory, self.max_model_len)
        return self._llm

    def runner(self) -> Any:
        """vLLM's model runner (in this process), whose batch state the steering hooks read."""
        return self.llm.collective_rpc(lambda worker: worker.model_runner)[0]

    def _stop_ids(self) -> list[int]:
        """The HF backend's stop set: the generation config's EOS ids and the tokenizer's."""
        ids = self.lm.model.generation_config.eos_token_id
        found = [ids] if isinstance(ids, int) else list(ids or [])
        if self.lm.tokenizer.eos_token_id is not None:
            found.append(self.lm.tokenizer.eos_token_id)
        return sorted(set(found))

    def _sampling(self, params: SamplingParams, seed: int, row: int) -> Any:
        from vllm import SamplingParams as VLLMSamplingParams

        greedy = params.temperature == 0
        return VLLMSamplingParams(
            temperature=params.temperature,
            top_p=1.0 if greedy else params.top_p,
            top_k=0 if greedy else params.top_k,
            max_tokens=params.max_new_tokens,
            min_tokens=params.min_new_tokens,
            seed=None if greedy else seed,
            stop_token_ids=self._stop_ids(),
            detokenize=False,
            extra_args={ROW_KEY: row},
        )

    def steer_fallback_reason(self, steers: Sequence[Steer]) -> str | None:
        """Why these steers cannot run inside vLLM exactly, or None."""
        return unsteerable_reason(self.runner().get_model()) if steers else None

    def generate_ids(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        seeds: Sequence[int],
        steers: Sequence[Steer] = (),
        progress: bool = True,
    ) -> list[list[int]]:
        """Generated token ids per prompt (chat-templated text), `steers` applied with row-indexed coefs."""
        directions = check_steers(self.lm.model, steers)
        for steer in steers:
            if isinstance(steer.coef, Tensor) and steer.coef.dim() > 0 and steer.coef.shape[0] != len(prompts):
                raise ValueError(f"per-row coef has {steer.coef.shape[0]} rows but there are {len(prompts)} prompts")
        from vllm.inputs import TokensPrompt

        encoded = self.lm.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        requests = [TokensPrompt(prompt_token_ids=ids) for ids in encoded]
        sampling = [self._sampling(params, seed, row) for row, seed in enumerate(seeds)]
        context = steering_in_vllm(self.runner(), steers, directions) if steers else _nothing()
        with context, torch.inference_mode():
            outputs = self.llm.generate(requests, sampling, use_tqdm=progress)
        return [list(out.outputs[0].token_ids) for out in outputs]

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        seeds: Sequence[int],
        steer_factory: SteerFactory | None = None,
        progress: bool = True,
    ) -> list[str]:
        """Answers for `prompts` (already chat-templated), one seed per row; HF when vLLM cannot steer exactly."""
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        steers = steer_factory(list(range(len(prompts)))) if steer_factory else []
        reason = self.steer_fallback_reason(steers)
        if reason is not None:
            log.warning("vLLM cannot steer this model exactly (%s); generating with the HF backend", reason)
            return self.fallback.generate(prompts, params, seeds, steer_factory, progress=progress)
        ids = self.generate_ids(prompts, params, seeds, steers, progress)
        return self.lm.tokenizer.batch_decode(ids, skip_special_tokens=True)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# ---------------------------------------------------------------- choosing a backend


def make_backend(
    name: str, lm: LoadedModel, *, batch_size: int = 16, gpu_memory_utilization: float | None = None
) -> GenerationBackend:
    """The backend `name` asks for. vLLM where it can run here; otherwise HF, said in the log: quietly for
    `auto`, as a warning for `vllm` (the answers are then HF's, and their records say so)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {name!r}")
    if name == "hf":
        return HFBackend(lm, batch_size)
    reason = vllm_unusable_reason(lm.device)
    if reason is None:
        return VLLMBackend(lm, batch_size=batch_size, gpu_memory_utilization=gpu_memory_utilization)
    if name == "vllm":
        log.warning("backend vllm: %s; generating with the HF backend instead", reason)
    else:
        log.info("backend auto: using the HF backend (%s)", reason)
    return HFBackend(lm, batch_size)
