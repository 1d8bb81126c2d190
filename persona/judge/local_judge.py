"""Local Hugging Face logprob judge: the exact expected score over whole answers.

An OpenAI judge reads one token because its tokenizer has a token for every number
0..100. Most open tokenizers split numbers into digits, so here each possible answer
(the numbers 0..100, or YES/NO/REFUSAL, ...) is scored as a token sequence:

    P(n) = P(tokens of n | prompt) * P(next token does not start with a digit | prompt, n)

(the second factor keeps "8" from also counting the "8" in "85"). The prompt runs once;
all candidates are then scored in one batch over its cached keys and values. The table
{answer: P} goes through the same aggregation as the API judge. Use a capable model on
a GPU: small models are not useful judges.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache

import torch

from persona.generation import chat_prompts
from persona.judge.aggregate import aggregate, candidates
from persona.judge.cache import model_identity, open_cache
from persona.judge.prompts import fill
from persona.judge.runner import BaseJudge, check_pairs
from persona.models import LoadedModel

_DIGIT_TOKEN = re.compile(r"[0-9]|<0x3[0-9]>")  # a digit, or a SentencePiece byte-fallback digit


@lru_cache(maxsize=8)
def _digit_start_mask(tokenizer, vocab_size: int) -> torch.Tensor:
    """Boolean [vocab] mask of tokens whose text starts with a digit (they would extend a number)."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    for i, t in enumerate(tokens):
        if t and _DIGIT_TOKEN.match(t):
            mask[i] = True
    return mask


def candidate_logprobs(lm: LoadedModel, prompt: str, answers: Sequence[str]) -> torch.Tensor:
    """log P(answer, then a non-digit) after `prompt` for each answer, exactly, in one batch.

    Prompt and answer are tokenized together (a trailing space in the prompt may merge into
    the answer's first token); the longest prefix shared by all is run once and cached.
    """
    tok, model = lm.tokenizer, lm.model
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    full = [tok(prompt + a, add_special_tokens=False)["input_ids"] for a in answers]
    shared = min(len(os.path.commonprefix([prompt_ids, f])) for f in full)
    if shared == 0:
        raise ValueError("the judge prompt is empty or does not tokenize as a prefix of prompt + answer")
    tails = [f[shared:] for f in full]
    width = max(map(len, tails))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    with torch.inference_mode():
        head = model(input_ids=torch.tensor([prompt_ids[:shared]], device=lm.device), use_cache=True, logits_to_keep=1)
        cache = head.cache
        cache.batch_repeat_interleave(len(answers))
        ids = torch.tensor([t + [pad] * (width - len(t)) for t in tails], device=lm.device)
        positions = torch.arange(shared, shared + width, device=lm.device).expand_as(ids)
        rest = model(input_ids=ids, position_ids=positions, cache=cache, use_cache=True).logits
    # step j predicts tail token j (j = 0 from the prompt's last position), step len(tail) the one after.
    steps = torch.cat([head.logits[:, -1:].expand(len(answers), -1, -1), rest], dim=1).float().log_softmax(-1)
    digit = _digit_start_mask(tok, steps.shape[-1]).to(steps.device)
    out = torch.empty(len(answers))
    for i, tail in enumerate(tails):
        n = len(tail)
        total = steps[i, torch.arange(n), torch.tensor(tail)].sum()
        if answers[i].isdigit():
            total = total + torch.log1p(-steps[i, n][digit].exp().sum().clamp(max=1 - 1e-7))
        out[i] = total
    return out


class LocalLogprobJudge(BaseJudge):
    """A local HF model as a logprob judge (exact expectation; see the module docstring)."""

    batched = True

    def __init__(
        self, lm: LoadedModel, template: str, *, eval_type: str = "0_100", prefill: str = "", use_cache: bool = True
    ) -> None:
        self.choices = candidates(eval_type)  # fails early for binary_text, which needs generation
        self.lm = lm
        self.template = template
        self.eval_type = eval_type
        self.prefill = prefill
        self.cache = open_cache(use_cache)
        self.backend = f"local/{eval_type}"
        self._model_key: str | None = None

    def prompt(self, question: str, answer: str) -> str:
        """The full judge input: chat-templated user message, generation prompt, then the prefill."""
        user = fill(self.template, question, answer)
        return chat_prompts(self.lm.tokenizer, [[{"role": "user", "content": user}]])[0] + self.prefill

    def probabilities(self, prompt: str) -> dict[str, float]:
        lps = candidate_logprobs(self.lm, prompt, self.choices)
        return {c: float(p) for c, p in zip(self.choices, lps.exp())}

    def score_batch(self, questions: Sequence[str], answers: Sequence[str]) -> list[float | None]:
        check_pairs(questions, answers)
        if self._model_key is None:
            self._model_key = model_identity(self.lm)
        scores: list[float | None] = []
        for question, answer in zip(questions, answers):
            prompt = self.prompt(question, answer)
            hit, score = self.cache.get(self.backend, self._model_key, prompt)
            if not hit:
                score = aggregate(self.probabilities(prompt), self.eval_type)
                self.cache.put(self.backend, self._model_key, prompt, score)
            scores.append(score)
        return scores

    async def __call__(self, *, question: str, answer: str) -> float | None:
        return self.score_batch([question], [answer])[0]
