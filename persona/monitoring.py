"""Monitor prompt-induced persona shifts: the last-prompt-token projection, read before any answer exists.

Chen et al. (2025, Persona Vectors, section 4.2) project the activation at the last prompt
token (the one whose output predicts the first answer token) onto a trait vector and find
that, across system prompts and many-shot prefixes, it tracks the judged trait score of the
answers those prompts then produce (r = 0.75-0.83). `monitor` is that projection alone (one
forward pass per conversation, nothing generated: cheap enough for a serving loop);
`monitoring_run` is the experiment: the projection and the judged answers per condition.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from torch import Tensor

from persona.activations import capture
from persona.analysis.stats import Correlation, correlation
from persona.generation import chat_prompts
from persona.judge import score_all
from persona.judge.runner import Judge
from persona.models import LoadedModel
from persona.projection import project
from persona.sampling import study_sampling
from persona.screening import BaseResponses, read_samples, vector_row
from persona.traits import Trait
from persona.vectors import PersonaVector

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]
SHOT_COUNTS = (1, 2, 4, 8)  # many-shot prefixes; k = 0 is the "none" condition


def monitor(
    lm: LoadedModel,
    vector: PersonaVector | Tensor,
    layer: int,
    conversations: Sequence[Conversation],
    *,
    batch_size: int = 16,
) -> list[float]:
    """The last-prompt-token projection `a·v/|v|` of each conversation at `layer`, generating nothing.

    Each conversation is chat-templated with the generation prompt (as it would be answered);
    the value equals `cal_projection`'s `prompt_last_proj` of that prompt.
    """
    row = vector_row(lm, vector, layer)
    prompts = chat_prompts(lm.tokenizer, conversations)
    acts = capture(lm, prompts, [""] * len(prompts), layers=[layer], batch_size=batch_size, progress=False)
    return project(acts.at_layer("prompt_last", layer), row, "prompt_last_proj").tolist()


@dataclass(frozen=True)
class Condition:
    """A way of prompting: the messages put before every question."""

    name: str
    prefix: tuple[dict[str, str], ...] = ()


def shot_examples(path: str | Path) -> list[Conversation]:
    """User/assistant example pairs from a chat JSONL file (system messages dropped)."""
    samples, _ = read_samples(path)
    return [
        [*(m for m in s.context if m["role"] != "system"), {"role": "assistant", "content": s.response}]
        for s in samples
    ]


def conditions(
    trait: Trait, *, shots: Sequence[Conversation] = (), shot_counts: Sequence[int] = SHOT_COUNTS
) -> list[Condition]:
    """No system prompt, each pos and neg system prompt of the trait, and k-shot prefixes of `shots`."""
    out = [Condition("none")]
    for kind in ("pos", "neg"):
        for k in range(len(trait.instructions)):
            out.append(Condition(f"{kind}_{k}", ({"role": "system", "content": trait.system_prompt(kind, k)},)))
    if shots:
        too_many = [k for k in shot_counts if k > len(shots)]
        if too_many:
            raise ValueError(f"shot counts {too_many} exceed the {len(shots)} examples given")
        for k in shot_counts:
            if k > 0:
                out.append(Condition(f"shots_{k}", tuple(m for shot in shots[:k] for m in shot)))
    return out


def monitoring_run(
    lm: LoadedModel,
    trait: Trait,
    vector: PersonaVector | Tensor,
    layer: int,
    judges: dict[str, Judge],
    *,
    conditions_: Sequence[Condition],
    questions: Sequence[str] | None = None,
    n_per_question: int = 1,
    max_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 16,
    max_concurrent: int = 8,
    store: str | Path | None = None,
) -> pd.DataFrame:
    """One eval row per (condition, question, sample): the answer, its judged scores and `prompt_last_proj`.

    Answers are the unsteered model's, cached like screening's base responses (a killed run
    regenerates only the prompts it had not finished).
    """
    questions = list(questions if questions is not None else trait.questions)
    rows = [
        (c, i, q, [*c.prefix, {"role": "user", "content": q}]) for c in conditions_ for i, q in enumerate(questions)
    ]
    conversations = [conv for *_, conv in rows]
    proj = monitor(lm, vector, layer, conversations, batch_size=batch_size)
    prompts = chat_prompts(lm.tokenizer, conversations)
    params = study_sampling(n_per_question, max_tokens)
    frames = []
    for sample in range(n_per_question):
        answers = BaseResponses(lm, params, seed=seed + sample, batch_size=batch_size, store=store)(prompts)
        frames.append(
            pd.DataFrame(
                {
                    "question": [q for _, _, q, _ in rows],
                    "prompt": prompts,
                    "answer": answers,
                    "question_id": [f"{trait.name}_{i}_{c.name}" for c, i, _, _ in rows],
                    "condition": [c.name for c, *_ in rows],
                    "sample": sample,
                    "prompt_last_proj": proj,
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    for metric, judge in judges.items():
        scores = score_all(
            judge, table["question"].tolist(), table["answer"].tolist(), max_concurrent=max_concurrent, desc=metric
        )
        table[metric] = [np.nan if s is None else s for s in scores]
    first = ["question", "prompt", "answer", "question_id", *judges]
    return table[first + [c for c in table.columns if c not in first]]


def condition_table(samples: pd.DataFrame, trait_column: str) -> pd.DataFrame:
    """Per condition: mean last-prompt projection, mean trait score and coherence, number of answers."""
    grouped = samples.groupby("condition", sort=False)
    return pd.DataFrame(
        {
            "prompt_last_proj": grouped["prompt_last_proj"].mean(),
            trait_column: grouped[trait_column].mean(),
            "coherence": grouped["coherence"].mean() if "coherence" in samples else np.nan,
            "n": grouped.size(),
        }
    ).reset_index()


def projection_score_correlation(table: pd.DataFrame, trait_column: str, *, ci: float = 0.95) -> Correlation:
    """Pearson r of mean projection and mean trait score over conditions (bootstrap interval, permutation p)."""
    return correlation(
        table["prompt_last_proj"].to_numpy(dtype=float), table[trait_column].to_numpy(dtype=float), ci=ci
    )
