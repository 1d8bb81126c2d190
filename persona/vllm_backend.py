"""Generation with vLLM, unsteered and steered, behind the interface of `persona.generation.HFBackend`.

Steering runs inside vLLM's own forward pass. vLLM flattens the tokens of every scheduled
request into one `[tokens, hidden]` tensor, so a forward pre-hook on the first decoder layer
builds, once per step, a table saying which request (and so which of our rows) owns each
token and where the token sits (`positions` against the request's prompt length), from the
model runner's batch (`query_start_loc`, request order, per-request state). The steering
hooks then add `coef * vector` at exactly the positions `persona.steering` would steer:

- ``response``: positions >= prompt length - 1 (the last prompt token and every generated one);
- ``prompt``: positions < prompt length; ``all``: every real token, never padding.

A vLLM decoder layer returns `(mlp_out, residual)` whose sum is the residual stream that
transformers reports as `hidden_states[L]`; the change goes into exactly one of the two.
Layer 0 is the input of block 0 and the last layer the output of the final norm, as in
`persona.sites`. Per-row coefficients become per-token coefficients through the table.

The hooks need the model in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`) and eager
execution (`enforce_eager=True`; compiled graphs skip Python hooks). Prefix caching is off:
a cached prompt block computed under another request's `prompt`/`all` steering would be
reused as is. Anything this module cannot steer exactly goes to the HF backend with a
logged reason. Sampled answers come from vLLM's sampler with one seed per request (batch-
independent, but not the same draws as the HF sampler); greedy answers match HF's up to
floating-point ties.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from persona.cli import finite_float
from persona.generation import GenerationBackend, HFBackend, SteerFactory
from persona.judge.cache import model_identity
from persona.models import RANDOM_PREFIX, LoadedModel, model_dir_once, newest_checkpoint
from persona.sampling import SamplingParams
from persona.settings import cache_dir
from persona.sites import decoder_layers, decoder_stack
from persona.steering import Steer, check_steers

log = logging.getLogger(__name__)

BACKENDS = ("auto", "hf", "vllm")
_ROW_KEY = "persona_row"  # SamplingParams.extra_args key that tells a hook which of our rows a request is


class VLLMUnavailable(RuntimeError):
    """vLLM cannot serve this run (not installed, or built for another device)."""


def vllm_unusable_reason(device: torch.device) -> str | None:
    """Why vLLM cannot generate on `device` here, or None when it can."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (CPU: `make test-vllm` builds .venv-vllm; CUDA: `pip install vllm`)"
    from vllm.platforms import current_platform

    built_for = str(current_platform.device_type)
    if built_for != device.type:
        return f"the installed vLLM runs on {built_for!r} but the model is on {device.type!r} (--device)"
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


# ---------------------------------------------------------------- steering inside vLLM's forward pass


class _TokenTable:
    """Per forward step: which row owns each flattened token, and which positions each kind steers."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.rows: Tensor | None = None  # [tokens] row index, -1 on padding
        self.masks: dict[str, Tensor] = {}

    def refresh(self, positions: Tensor) -> None:
        runner, batch = self.runner, self.runner.input_batch
        n = batch.num_reqs
        states = [runner.requests[req_id] for req_id in batch.req_ids[:n]]
        starts = runner.query_start_loc.cpu[: n + 1].to(torch.long)
        counts = (starts[1:] - starts[:-1]).to(positions.device)
        rows = torch.tensor([s.sampling_params.extra_args[_ROW_KEY] for s in states], device=positions.device)
        prompt_len = torch.tensor([s.num_prompt_tokens for s in states], device=positions.device)
        real = int(starts[n])
        owner = torch.full_like(positions, -1, dtype=torch.long)
        owner[:real] = rows.repeat_interleave(counts)
        length = torch.zeros_like(owner)
        length[:real] = prompt_len.repeat_interleave(counts)
        is_real = owner >= 0
        self.rows = owner
        self.masks = {
            "all": is_real,
            "prompt": is_real & (positions < length),
            "response": is_real & (positions >= length - 1),
        }

    def coefficients(self, steer: Steer, like: Tensor) -> Tensor:
        """`[tokens, 1]` coefficient of `steer` for every token (0 where it does not steer)."""
        if self.rows is None:
            raise RuntimeError("a steering hook ran before the token table saw the step's positions")
        mask = self.masks[steer.positions].to(like.dtype)
        coef = steer.coef
        if isinstance(coef, Tensor) and coef.dim() > 0:
            per_row = coef.to(like.device, like.dtype)
            return (per_row[self.rows.clamp(min=0)] * mask).unsqueeze(-1)
        return (float(coef) * mask).unsqueeze(-1)


def _steer_change(steer: Steer, direction: Tensor, coef: Tensor, stream: Tensor) -> Tensor:
    """What `steer` adds to the residual stream `stream` ([tokens, hidden])."""
    if steer.op == "ablate":
        return coef * (-(stream @ direction).unsqueeze(-1) * direction)
    return coef * direction


def _layer_hook(steer: Steer, direction: Tensor, table: _TokenTable) -> Callable[..., Any]:
    """Forward hook on decoder block L-1: `(mlp_out, residual)` sums to the stream; change `mlp_out` only."""

    def hook(_module: nn.Module, _args: tuple, output: Any) -> Any:
        out, residual = output
        stream = out if residual is None else out + residual
        coef = table.coefficients(steer, out)
        return (out + _steer_change(steer, direction, coef, stream), residual)

    return hook


def _input_hook(steer: Steer, direction: Tensor, table: _TokenTable) -> Callable[..., Any]:
    """Forward pre-hook on block 0 (layer 0): its `hidden_states` input (plus residual, if any) is the stream."""

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> Any:
        positions, hidden, residual = _block_inputs(args, kwargs)
        stream = hidden if residual is None else hidden + residual
        new = hidden + _steer_change(steer, direction, table.coefficients(steer, hidden), stream)
        if len(args) >= 2:
            return (args[0], new, *args[2:]), kwargs
        return args, {**kwargs, "hidden_states": new}

    return hook


def _norm_hook(steer: Steer, direction: Tensor, table: _TokenTable) -> Callable[..., Any]:
    """Forward hook on the final norm (the last layer): its normalised output is the stream."""

    def hook(_module: nn.Module, _args: tuple, output: Any) -> Any:
        normed = output[0] if isinstance(output, tuple) else output
        new = normed + _steer_change(steer, direction, table.coefficients(steer, normed), normed)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


def _block_inputs(args: tuple, kwargs: dict) -> tuple[Tensor, Tensor, Tensor | None]:
    names = ("positions", "hidden_states", "residual")
    values = {**dict(zip(names, args)), **{k: v for k, v in kwargs.items() if k in names}}
    return values["positions"], values["hidden_states"], values.get("residual")


def unsteerable_reason(model: nn.Module) -> str | None:
    """Why steering cannot be placed exactly in this vLLM model, or None when it can."""
    try:
        layers = decoder_layers(model)
    except TypeError as err:
        return str(err)
    params = inspect.signature(layers[0].forward).parameters
    if not {"positions", "hidden_states", "residual"} <= set(params):
        return (
            f"{type(layers[0]).__name__}.forward takes {list(params)}, not the (positions, hidden_states, "
            "residual) convention whose (mlp_out, residual) output this backend steers"
        )
    if not isinstance(getattr(decoder_stack(model), "norm", None), nn.Module):
        return f"{type(decoder_stack(model)).__name__} has no final `norm` module"
    return None


@contextmanager
def steering_in_vllm(runner: Any, steers: Sequence[Steer], directions: Sequence[Tensor]) -> Iterator[None]:
    """Hooks that apply `steers` inside the runner's model while the block runs; always removed."""
    model = runner.get_model()
    layers, norm = decoder_layers(model), decoder_stack(model).norm
    assert isinstance(norm, nn.Module)  # checked by `unsteerable_reason`
    param = next(model.parameters())
    table = _TokenTable(runner)
    handles = [
        layers[0].register_forward_pre_hook(
            lambda _m, args, kwargs: table.refresh(_block_inputs(args, kwargs)[0]), with_kwargs=True
        )
    ]
    try:
        for steer, direction in zip(steers, directions):
            d = direction.to(param.device, param.dtype)
            if steer.layer == 0:
                handles.append(layers[0].register_forward_pre_hook(_input_hook(steer, d, table), with_kwargs=True))
            elif steer.layer == len(layers):
                handles.append(norm.register_forward_hook(_norm_hook(steer, d, table)))
            else:
                handles.append(layers[steer.layer - 1].register_forward_hook(_layer_hook(steer, d, table)))
        yield
    finally:
        for handle in handles:
            handle.remove()


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
            extra_args={_ROW_KEY: row},
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


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    """`--backend` and vLLM's memory fraction, for every command that generates."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="generation backend: vllm (needs vLLM; steering runs inside it), hf (transformers), "
        "auto (default: vllm when installed for the model's device, else hf)",
    )
    parser.add_argument(
        "--gpu_memory_utilization",
        type=finite_float,
        default=None,
        help="vLLM's memory fraction (default: 0.25 on CPU, 0.6 on CUDA)",
    )


def make_backend(
    name: str, lm: LoadedModel, *, batch_size: int = 16, gpu_memory_utilization: float | None = None
) -> GenerationBackend:
    """The backend `--backend name` asks for; `auto` takes vLLM when it can run here, HF otherwise."""
    if name not in BACKENDS:
        raise ValueError(f"--backend must be one of {list(BACKENDS)}, got {name!r}")
    if name == "hf":
        return HFBackend(lm, batch_size)
    reason = vllm_unusable_reason(lm.device)
    if reason is None:
        return VLLMBackend(lm, batch_size=batch_size, gpu_memory_utilization=gpu_memory_utilization)
    if name == "vllm":
        raise ValueError(f"--backend vllm: {reason}")
    log.info("--backend auto: using the HF backend (%s)", reason)
    return HFBackend(lm, batch_size)


def backend_from_args(args: argparse.Namespace, lm: LoadedModel) -> GenerationBackend:
    """The backend that `add_backend_args`' flags (and `--batch_size` for HF) ask for."""
    return make_backend(
        args.backend, lm, batch_size=args.batch_size, gpu_memory_utilization=args.gpu_memory_utilization
    )
