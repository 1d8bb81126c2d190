"""Persona evaluation: build the chats for a trait, generate (optionally steered), judge.

A plain evaluation is a sweep with one cell. A sweep packs the rows of all its cells
into shared generation batches (per-row coefficients and layers), so a small grid fills
the batch; per-row seeds keep every cell equal to a run of that cell alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
import torch

from persona.generation import GenerationBackend, SamplingParams, chat_prompts, row_seed
from persona.steering import Steer
from persona.traits import Trait

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("question", "prompt", "answer", "question_id")


@dataclass
class Sample:
    """One chat to answer: a question, its system prompt (if any) and its sample index."""

    question: str
    question_id: str
    messages: list[dict[str, str]]
    sample: int


@dataclass
class Cell:
    """One evaluation condition: the steers applied to every row of it."""

    name: str
    steers: list[Steer] = field(default_factory=list)


def build_samples(trait: Trait, *, n_per_question: int,
                  instruction_type: Literal["pos", "neg"] | None = None,
                  assistant_name: str | None = None) -> list[Sample]:
    """The chats of an evaluation, in the original order (question, instruction, sample).

    With an instruction type every question is asked under each of the trait's 5 system
    prompts, so pos and neg runs pair up row by row.
    """
    samples = []
    for i, question in enumerate(trait.questions):
        if instruction_type is None:
            variants = [(f"{trait.name}_{i}", [])]
        else:
            variants = [(f"{trait.name}_{i}_{instruction_type}_{k}",
                         [{"role": "system", "content": trait.system_prompt(instruction_type, k, assistant_name)}])
                        for k in range(len(trait.instructions))]
        for qid, system in variants:
            messages = system + [{"role": "user", "content": question}]
            samples.extend(Sample(question, qid, messages, s) for s in range(n_per_question))
    return samples


def _steer_factory(cells: Sequence[Cell], cell_of_row: Sequence[int]):
    """Per-batch steers: one hook per distinct (vector, layer, positions, op), per-row coefs."""

    def factory(rows: Sequence[int]) -> list[Steer]:
        groups: dict[tuple, tuple[Steer, torch.Tensor]] = {}
        for slot, row in enumerate(rows):
            for steer in cells[cell_of_row[row]].steers:
                key = (id(steer.vector), steer.layer, steer.positions, steer.op)
                if key not in groups:
                    groups[key] = (steer, torch.zeros(len(rows)))
                groups[key][1][slot] += float(steer.coef)
        return [Steer(s.vector, s.layer, coefs, s.positions, s.op) for s, coefs in groups.values()]

    return factory


def generate_cells(backend: GenerationBackend, tokenizer, samples: Sequence[Sample], cells: Sequence[Cell],
                   params: SamplingParams, seed: int) -> list[pd.DataFrame]:
    """Answer every sample under every cell in shared batches; one frame per cell."""
    prompts = chat_prompts(tokenizer, [s.messages for s in samples])
    seeds = [row_seed(seed, s.question_id, s.sample, s.question) for s in samples]
    all_prompts = prompts * len(cells)
    cell_of_row = [c for c in range(len(cells)) for _ in samples]
    steered = any(cell.steers for cell in cells)
    factory = _steer_factory(cells, cell_of_row) if steered else None
    answers = backend.generate(all_prompts, params, seeds * len(cells), factory)
    frames = []
    for c in range(len(cells)):
        chunk = answers[c * len(samples):(c + 1) * len(samples)]
        frames.append(pd.DataFrame({"question": [s.question for s in samples], "prompt": prompts,
                                    "answer": chunk, "question_id": [s.question_id for s in samples]}))
    return frames


def judge_frame(df: pd.DataFrame, judges: dict[str, object], *, max_concurrent: int) -> pd.DataFrame:
    """Add one score column per judge (trait column, then coherence); failures stay None."""
    from persona.judge import score_all

    df = df.copy()
    for column, judge in judges.items():
        df[column] = score_all(judge, df["question"].tolist(), df["answer"].tolist(),
                               max_concurrent=max_concurrent, desc=f"judging {column}")
    return df


def summarize(df: pd.DataFrame, columns: Sequence[str]) -> str:
    """`column: mean +- std (n scored / n)` lines for the printed summary."""
    lines = []
    for column in columns:
        scores = pd.to_numeric(df[column], errors="coerce")
        lines.append(f"{column}: {scores.mean():.2f} +- {scores.std():.2f} "
                     f"({scores.notna().sum()}/{len(scores)} scored)")
    return "\n".join(lines)


def sweep_filename(trait: str, steering_type: str, layer: int, coef: float) -> str:
    return f"{trait}_steer_{steering_type}_layer_{layer}_coef_{float(coef)!r}.csv"
