"""The rows of an evaluation and the cells they are answered under, generated in shared batches.

A `Sample` is one chat to answer; a `Cell` is one steering condition applied to every
sample. `generate_cells` packs the rows of all cells (and all sampling seeds) into shared
generation batches with per-row coefficients and layers, so a small grid fills the batch;
per-row seeds keep every cell equal to a run of that cell alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
import torch

from persona.generation import GenerationBackend, SamplingParams, chat_prompts, row_seed
from persona.steering import Steer
from persona.traits import Trait

OUTPUT_COLUMNS = ("question", "prompt", "answer", "question_id")
SEED_COLUMN = "seed"  # present only when a run samples under several seeds


@dataclass
class Sample:
    """One chat to answer: a question, its system prompt (if any) and its sample index."""

    question: str
    question_id: str
    messages: list[dict[str, str]]
    sample: int


@dataclass
class Cell:
    """One evaluation condition: the steers applied to every row of it (none: unsteered)."""

    name: str
    steers: list[Steer] = field(default_factory=list)


def build_samples(
    trait: Trait,
    *,
    n_per_question: int,
    instruction_type: Literal["pos", "neg"] | None = None,
    assistant_name: str | None = None,
) -> list[Sample]:
    """The chats of an evaluation, in the original order (question, instruction, sample).

    With an instruction type every question is asked under each of the trait's 5 system
    prompts, so pos and neg runs pair up row by row.
    """
    samples: list[Sample] = []
    for i, question in enumerate(trait.questions):
        variants: list[tuple[str, list[dict[str, str]]]]
        if instruction_type is None:
            variants = [(f"{trait.name}_{i}", [])]
        else:
            variants = [
                (
                    f"{trait.name}_{i}_{instruction_type}_{k}",
                    [{"role": "system", "content": trait.system_prompt(instruction_type, k, assistant_name)}],
                )
                for k in range(len(trait.instructions))
            ]
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


def generate_cells(
    backend: GenerationBackend,
    tokenizer,
    samples: Sequence[Sample],
    cells: Sequence[Cell],
    params: SamplingParams,
    seed: int | Sequence[int],
) -> list[pd.DataFrame]:
    """Answer every sample under every cell (and every seed) in shared batches; one frame per cell.

    With several seeds each cell's frame holds the samples once per seed, seed by seed, and a
    `seed` column; with one seed the frame has exactly the `OUTPUT_COLUMNS`.
    """
    seeds = [seed] if isinstance(seed, int) else list(seed)
    prompts = chat_prompts(tokenizer, [s.messages for s in samples])
    rows = [(s, p, sd) for sd in seeds for s, p in zip(samples, prompts, strict=True)]
    row_seeds = [row_seed(sd, s.question_id, s.sample, s.question) for s, _, sd in rows]
    cell_of_row = [c for c in range(len(cells)) for _ in rows]
    steered = any(cell.steers for cell in cells)
    factory = _steer_factory(cells, cell_of_row) if steered else None
    answers = backend.generate([p for _, p, _ in rows] * len(cells), params, row_seeds * len(cells), factory)
    frames = []
    for c in range(len(cells)):
        chunk = answers[c * len(rows) : (c + 1) * len(rows)]
        frame = pd.DataFrame(
            {
                "question": [s.question for s, _, _ in rows],
                "prompt": [p for _, p, _ in rows],
                "answer": chunk,
                "question_id": [s.question_id for s, _, _ in rows],
            }
        )
        if len(seeds) > 1:
            frame[SEED_COLUMN] = [sd for _, _, sd in rows]
        frames.append(frame)
    return frames
