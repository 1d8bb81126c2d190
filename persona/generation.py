"""Batched chat generation behind a small backend interface (HF now; vLLM can plug in).

Sampling is reproducible per row: each row carries its own seed and draws from its own
`torch.Generator`, so an answer depends on (seed, prompt, steering) and not on which
other rows share its batch. That is what lets a steering sweep pack cells into shared
batches and still equal cell-by-cell runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from persona.models import LoadedModel
from persona.steering import Steer, steering

Conversation = list[dict[str, str]]
# Given the indices of the rows in a batch, the steers to apply to that batch.
SteerFactory = Callable[[Sequence[int]], list[Steer]]


@dataclass
class SamplingParams:
    max_new_tokens: int = 1000
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0


def row_seed(seed: int, *keys: object) -> int:
    """A stable 63-bit seed for one sample, from the run seed and the sample's identity."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class RowSampler(LogitsProcessor):
    """Samples each row with its own generator and returns a one-hot score row.

    Used with greedy decoding, so `generate` keeps its cache and stopping logic while the
    draw itself is batch-independent.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1).cpu()
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > self.top_p
            sorted_p[drop] = 0.0
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        picks = [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators)]
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, torch.cat(picks).view(-1, 1).to(scores.device), 0.0)
        return out


def chat_prompts(tokenizer, conversations: Sequence[Conversation]) -> list[str]:
    """Chat-templated prompt texts ending with the assistant generation prompt."""
    return [tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True)
            for c in conversations]


class GenerationBackend(Protocol):
    def generate(self, prompts: Sequence[str], params: SamplingParams, seeds: Sequence[int],
                 steer_factory: SteerFactory | None = None) -> list[str]: ...


class HFBackend:
    """Transformers `generate` with left padding, KV cache and batch-independent sampling."""

    def __init__(self, lm: LoadedModel, batch_size: int = 16) -> None:
        self.lm = lm
        self.batch_size = batch_size

    def _stop_ids(self) -> list[int]:
        ids = self.lm.model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.lm.tokenizer.eos_token_id is not None:
            ids.append(self.lm.tokenizer.eos_token_id)
        return sorted(set(ids))

    def generate(self, prompts: Sequence[str], params: SamplingParams, seeds: Sequence[int],
                 steer_factory: SteerFactory | None = None, progress: bool = True) -> list[str]:
        """Answers for `prompts` (already chat-templated), one seed per row."""
        tok, model = self.lm.tokenizer, self.lm.model
        tok.padding_side = "left"
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # similar lengths share a batch
        answers: list[str] = [""] * len(prompts)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for rows in tqdm(batches, desc="generating", disable=not progress or len(batches) < 2):
            enc = tok([prompts[i] for i in rows], return_tensors="pt", padding=True,
                      add_special_tokens=False).to(self.lm.device)
            processors = LogitsProcessorList()
            if params.temperature > 0:
                processors.append(RowSampler([seeds[i] for i in rows], params.temperature, params.top_p))
            steers = steer_factory(rows) if steer_factory else []
            with torch.inference_mode(), steering(model, steers):
                out = model.generate(**enc, max_new_tokens=params.max_new_tokens, do_sample=False,
                                     logits_processor=processors, eos_token_id=self._stop_ids(),
                                     pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
            texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for i, text in zip(rows, texts):
                answers[i] = text
        return answers


def generate_answers(lm: LoadedModel, conversations: Sequence[Conversation], *, max_new_tokens: int,
                     temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                     batch_size: int = 16) -> list[str]:
    """Convenience: answer chat conversations with the HF backend (row i seeded by (seed, i))."""
    prompts = chat_prompts(lm.tokenizer, conversations)
    seeds = [row_seed(seed, i, prompts[i]) for i in range(len(prompts))]
    return HFBackend(lm, batch_size).generate(prompts, SamplingParams(max_new_tokens, temperature, top_p), seeds)
