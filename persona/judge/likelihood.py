"""The offline proxy judge: score answers by their likelihood under the evaluated model.

Small local models cannot act as 0-100 judges (SmolLM2-135M separates trait-prompted
from anti-trait-prompted answers no better than chance), but they do know which system
prompt makes an answer likely. So:

- trait: s = mean over the instruction pairs k of
  mean_t log p(answer_t | pos_k system, question) - mean_t log p(answer_t | neg_k system, question),
  reported as `trait_score(s) = 100 * sigmoid(s / TRAIT_SCALE)` (50 at s = 0).
- coherence: the mean token log-prob f of the answer under the model with no system prompt,
  `fluency(f) = 100 * sigmoid((f - FLUENCY_MID) / FLUENCY_SCALE)` (word salad is unlikely),
  times a repetition factor from how much of the answer repeats its own earlier text (a loop
  is predictable, so log-prob alone rates it fluent; see `repetition`).

This is a proxy for offline work; the paper's numbers need an LLM judge. It always scores
with the unmodified model: it refuses to run while a steering context is active.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from persona.batching import length_sorted_batches
from persona.generation import chat_prompts
from persona.judge.cache import model_identity, open_cache
from persona.judge.prompts import COHERENCE, strip_think
from persona.judge.runner import BaseJudge, check_pairs
from persona.models import LoadedModel
from persona.steering import is_steered

if TYPE_CHECKING:
    from persona.traits import Trait

# Calibrated on SmolLM2-135M answers (see README): trait-prompted sampled answers give s of
# about +0.00..+0.17 nats/token, anti-trait-prompted ones -0.19..+0.04.
TRAIT_SCALE = 0.05  # s = +-0.05 -> 73 / 27; +-0.1 -> 88 / 12
# Mean token log-prob f: the model's own greedy answers -1.0..-0.3, its temperature-1 samples
# -4.3..-1.2 (the worst are garbled), shuffled-word gibberish -7.6..-5.9. On the labelled set
# (tests/data/coherence_labels.jsonl) fluent answers have f >= -2.55 and word salad f <= -3.34:
# the midpoint sits between them (f = -2.55 -> 83, -3.34 -> 34).
FLUENCY_MID = -3.1  # -> fluency 50
FLUENCY_SCALE = 0.35
# Repetition (see `repetition`): the share of the answer that repeats earlier text, measured on
# characters and on words, over the whole answer and over its second half. Calibrated on the
# labelled set tests/data/coherence_labels.jsonl: the model's fluent answers reach at most 0.27,
# its degenerate ones at least 0.47 (most are above 0.8).
NGRAM = 20  # characters: longer than the stock phrases prose reuses ("it's important to")
WORD_NGRAM = 4  # words
LOOP_MIN_REPEATS = 3  # a periodic tail: at least 3 copies of its unit...
LOOP_MIN_CHARS = 16  # ... spanning at least 16 characters (not "...", "ha ha ha")
LOOP_MAX_PERIOD = 80  # units up to a long clause
LOOP_WINDOW = 60  # a periodic tail this long (or filling the second half) is a full loop
REPETITION_FREE = 0.3  # repetition at or below: no penalty
REPETITION_FULL = 0.55  # at or above: coherence 0


def trait_score(s: float) -> float:
    """Monotone map of the pos-minus-neg log-likelihood gap to 0-100, 50 at s = 0."""
    return 100.0 / (1.0 + math.exp(-s / TRAIT_SCALE))


def fluency(mean_logprob: float) -> float:
    return 100.0 / (1.0 + math.exp(-(mean_logprob - FLUENCY_MID) / FLUENCY_SCALE))


def repeated_share(units: Sequence[object], n: int, start: int = 0) -> float:
    """Share of the units at positions >= `start` that lie inside an n-gram already seen earlier.

    Overlapping occurrences count ("car-car-car" repeats "car-car" from its 5th character), so
    a loop is covered from its second period on, wherever in the answer it starts.
    """
    seen: set[tuple[object, ...]] = set()
    covered = [False] * len(units)
    for i in range(len(units) - n + 1):
        gram = tuple(units[i : i + n])
        if gram in seen:
            covered[i : i + n] = [True] * n
        seen.add(gram)
    tail = covered[start:]
    return sum(tail) / len(tail) if tail else 0.0


def periodic_tail(text: str) -> int:
    """Length of the longest suffix that is >= LOOP_MIN_REPEATS copies of one unit with a letter in it.

    An answer still looping when generation stopped ("... car-car-car-car-") ends in such a
    suffix; prose does not. Returns 0 when the suffix is shorter than LOOP_MIN_CHARS.
    """
    best = 0
    for period in range(1, min(LOOP_MAX_PERIOD, len(text) // LOOP_MIN_REPEATS) + 1):
        k = 0  # trailing characters equal to the character one period earlier
        while k < len(text) - period and text[-1 - k] == text[-1 - k - period]:
            k += 1
        span = k + period
        if span >= LOOP_MIN_REPEATS * period and span > best and any(c.isalpha() for c in text[-period:]):
            best = span
    return best if best >= LOOP_MIN_CHARS else 0


def _normalize(text: str) -> str:
    """Lower case, single spaces, every number as 0 (so "1. 100%  2. 100%" repeats like a loop)."""
    return re.sub(r"\d+", "0", " ".join(text.lower().split()))


def repetition(text: str) -> float:
    """How much of the answer repeats itself, 0 (none) to 1: the largest of five views.

    Character 20-grams and word 4-grams, each over the whole answer and over its second half
    (a loop that starts mid-answer fills the second half), plus a periodic tail counted
    against the second half or LOOP_WINDOW characters, whichever is shorter (a short loop at
    the end of a long answer is still a loop). Case and whitespace are ignored; hyphen- or space-free loops
    ("car-car-car", "carcarcar") are caught on characters, loops with changing punctuation
    or spacing on words.
    """
    chars = _normalize(text)
    words = re.findall(r"\w+", chars)
    half_c, half_w = len(chars) // 2, len(words) // 2
    views = [
        repeated_share(chars, NGRAM),
        repeated_share(chars, NGRAM, half_c),
        repeated_share(words, WORD_NGRAM),
        repeated_share(words, WORD_NGRAM, half_w),
        min(1.0, periodic_tail(chars) / max(1, min(len(chars) - half_c, LOOP_WINDOW))),
    ]
    return max(views)


def repetition_factor(text: str) -> float:
    """1 for prose, falling linearly to 0 as the answer repeats itself (too short to tell: 1)."""
    if len(text) < 2 * NGRAM:
        return 1.0
    r = repetition(text)
    return min(1.0, max(0.0, (REPETITION_FULL - r) / (REPETITION_FULL - REPETITION_FREE)))


def coherence_score(mean_logprob: float, text: str) -> float:
    return fluency(mean_logprob) * repetition_factor(text)


def answer_logprobs(
    lm: LoadedModel, prompts: Sequence[str], answers: Sequence[str], *, batch_size: int = 8
) -> list[torch.Tensor]:
    """log p(answer token | prompt, earlier answer tokens) for each pair, one 1-D tensor each.

    Prompts are full chat-templated texts; prompt and answer are tokenized separately, so an
    answer has the same tokens under every prompt. Rows are left-padded, with position ids
    from the attention mask, and only the last (longest answer + 1) logits are computed.
    """
    tok, model = lm.tokenizer, lm.model
    prompt_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    answer_ids = [tok(a, add_special_tokens=False)["input_ids"] for a in answers]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out: list[torch.Tensor] = [torch.empty(0)] * len(prompts)
    lengths = [(len(a), len(p)) for a, p in zip(answer_ids, prompt_ids)]
    for rows in length_sorted_batches(lengths, batch_size):  # similar answer lengths: few logits kept
        seqs = [prompt_ids[i] + answer_ids[i] for i in rows]
        width = max(map(len, seqs))
        keep = max(len(answer_ids[i]) for i in rows) + 1
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=lm.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=lm.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        for row, i in enumerate(rows):
            n = len(answer_ids[i])
            # logits[:, j] sits at input position width - keep + j and predicts the next token;
            # the answer fills the last n positions.
            lp = logits[row, keep - 1 - n : keep - 1].float().log_softmax(-1)
            target = torch.tensor(answer_ids[i], device=lp.device).view(-1, 1)
            out[i] = lp.gather(-1, target).view(-1).cpu()
    return out


class LikelihoodJudge(BaseJudge):
    """Trait or coherence scores from answer likelihoods under `lm` (see the module docstring)."""

    batched = True

    backend = "likelihood"

    def __init__(
        self, lm: LoadedModel, *, metric: str, trait: Trait | None = None, use_cache: bool = True, batch_size: int = 8
    ) -> None:
        if metric != COHERENCE and trait is None:
            raise ValueError(f"the likelihood judge for {metric!r} needs the trait (its instruction pairs)")
        self.lm = lm
        self.metric = metric
        self.batch_size = batch_size
        self.cache = open_cache(use_cache)
        # The system prompts each answer is scored under: pos_0, neg_0, pos_1, ... (coherence: none).
        if metric == COHERENCE:
            self.systems: list[str | None] = [None]
        else:
            assert trait is not None  # checked above
            pairs = range(len(trait.instructions))
            self.systems = [trait.system_prompt(kind, k) for k in pairs for kind in ("pos", "neg")]
        self._model_key: str | None = None

    def _check_unmodified(self) -> None:
        if is_steered(self.lm.model):
            raise RuntimeError(
                "the likelihood judge must score with the unmodified model, but a steering "
                "context is active on it: score after leaving `steering(...)`."
            )

    def _conversations(self, question: str) -> list[list[dict[str, str]]]:
        return [
            ([{"role": "system", "content": s}] if s is not None else []) + [{"role": "user", "content": question}]
            for s in self.systems
        ]

    def statistics(self, questions: Sequence[str], answers: Sequence[str]) -> list[float | None]:
        """The raw statistic per answer (s for a trait, mean log-prob for coherence); None if empty."""
        check_pairs(questions, answers)
        self._check_unmodified()
        if self._model_key is None:
            self._model_key = model_identity(self.lm)
        keys = [
            json.dumps({"metric": self.metric, "systems": self.systems, "question": q, "answer": a})
            for q, a in zip(questions, answers)
        ]
        values: list[float | None] = [None] * len(keys)
        todo = []
        for i, key in enumerate(keys):
            hit, value = self.cache.get(self.backend, self._model_key, key)
            if hit:
                values[i] = value
            elif answers[i].strip():
                todo.append(i)
        if todo:
            n = len(self.systems)
            prompts = [p for i in todo for p in chat_prompts(self.lm.tokenizer, self._conversations(questions[i]))]
            lps = answer_logprobs(
                self.lm, prompts, [answers[i] for i in todo for _ in range(n)], batch_size=self.batch_size
            )
            for j, i in enumerate(todo):
                means = [lp.mean().item() for lp in lps[j * n : (j + 1) * n]]
                values[i] = (
                    means[0]
                    if self.metric == COHERENCE
                    else sum(means[0::2]) / len(means[0::2]) - sum(means[1::2]) / len(means[1::2])
                )
                self.cache.put(self.backend, self._model_key, keys[i], values[i])
        return values

    def score_batch(self, questions: Sequence[str], answers: Sequence[str]) -> list[float | None]:
        answers = [strip_think(a) for a in answers]
        stats = self.statistics(questions, answers)
        if self.metric == COHERENCE:
            return [None if s is None else coherence_score(s, a) for s, a in zip(stats, answers)]
        return [None if s is None else trait_score(s) for s in stats]

    async def __call__(self, *, question: str, answer: str) -> float | None:
        return self.score_batch([question], [answer])[0]
