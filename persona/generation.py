"""Batched chat generation behind a small backend interface (HF now; vLLM can plug in).

Sampling is reproducible per row (see `persona.sampling`): an answer depends on its row
seed, prompt and steering, never on which rows share its batch. That is what lets a
steering sweep pack cells into shared batches and still equal cell-by-cell runs.

On CUDA the HF backend uses transformers' own fast decode path: a static KV cache, which
makes `generate` compile the decode step (`torch.compile`, CUDA graphs). Steering hooks run
inside it unchanged (per-row coefficients are tensors, so no Python work per row per step).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol, cast

import torch
from tqdm.auto import tqdm
from transformers import GenerationMixin, LogitsProcessorList

from persona.batching import length_sorted_batches
from persona.models import LoadedModel
from persona.sampling import RowSampler, SamplingParams
from persona.steering import Steer, steering

Conversation = list[dict[str, str]]
# Given the indices of the rows in a batch, the steers to apply to that batch.
SteerFactory = Callable[[Sequence[int]], list[Steer]]

# Sampling settings a model's generation_config could otherwise switch on behind the study's back.
_NEUTRAL = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
# Static caches are sized in steps of this many tokens, so batches with similar prompt lengths
# share one cache shape (and one compiled decode step).
CACHE_BUCKET = 256


def row_seed(seed: int, *keys: object) -> int:
    """A stable 63-bit seed for one sample, from the run seed and the sample's identity."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def chat_prompts(tokenizer, conversations: Sequence[Conversation]) -> list[str]:
    """Chat-templated prompt texts ending with the assistant generation prompt."""
    return [tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True) for c in conversations]


class GenerationBackend(Protocol):
    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        seeds: Sequence[int],
        steer_factory: SteerFactory | None = None,
    ) -> list[str]: ...


class HFBackend:
    """Transformers `generate` with left padding, KV cache and batch-independent sampling.

    `fast=None` picks the static-cache (compiled on CUDA) path on CUDA and the dynamic cache elsewhere.
    """

    def __init__(self, lm: LoadedModel, batch_size: int = 16, fast: bool | None = None) -> None:
        self.lm = lm
        self.batch_size = batch_size
        self.fast = lm.device.type == "cuda" if fast is None else fast

    def _stop_ids(self) -> list[int]:
        ids = self.lm.model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.lm.tokenizer.eos_token_id is not None:
            ids.append(self.lm.tokenizer.eos_token_id)
        return sorted(set(ids))

    def _cache_kwargs(self, prompt_length: int, params: SamplingParams) -> dict:
        if not self.fast:
            return {}
        needed = prompt_length + params.max_new_tokens
        return {"cache_implementation": "static", "max_cache_len": -(-needed // CACHE_BUCKET) * CACHE_BUCKET}

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        seeds: Sequence[int],
        steer_factory: SteerFactory | None = None,
        progress: bool = True,
    ) -> list[str]:
        """Answers for `prompts` (already chat-templated), one seed per row."""
        tok, model = self.lm.tokenizer, self.lm.model
        tok.padding_side = "left"
        answers: list[str] = [""] * len(prompts)
        batches = length_sorted_batches([len(p) for p in prompts], self.batch_size)
        for rows in tqdm(batches, desc="generating", disable=not progress or len(batches) < 2):
            enc = tok([prompts[i] for i in rows], return_tensors="pt", padding=True, add_special_tokens=False).to(
                self.lm.device
            )
            width = enc["input_ids"].shape[1]
            processors = LogitsProcessorList()
            if params.temperature > 0:
                processors.append(RowSampler([seeds[i] for i in rows], params, width, self.lm.device))
            steers = steer_factory(rows) if steer_factory else []
            with torch.inference_mode(), steering(model, steers):
                out = cast(GenerationMixin, model).generate(
                    **enc,
                    max_new_tokens=params.max_new_tokens,
                    min_new_tokens=params.min_new_tokens,
                    do_sample=False,
                    logits_processor=processors,
                    eos_token_id=self._stop_ids(),
                    pad_token_id=tok.pad_token_id,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    **_NEUTRAL,
                    **self._cache_kwargs(width, params),
                )
            texts = tok.batch_decode(out[:, width:], skip_special_tokens=True)
            for i, text in zip(rows, texts):
                answers[i] = text
        return answers


def generate_answers(
    lm: LoadedModel,
    conversations: Sequence[Conversation],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
) -> list[str]:
    """Convenience: answer chat conversations with the HF backend (row i seeded by (seed, i))."""
    prompts = chat_prompts(lm.tokenizer, conversations)
    seeds = [row_seed(seed, i, prompts[i]) for i in range(len(prompts))]
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    return HFBackend(lm, batch_size).generate(prompts, params, seeds)
