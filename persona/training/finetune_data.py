"""Finetuning datasets that elicit a trait: one question set, three answer levels.

For every question there is a `normal` answer (no trait), `misaligned_1` (mild trait) and
`misaligned_2` (strong trait); each level becomes its own chat JSONL file, so finetuning
on one file and comparing with another isolates the trait. Two backends:

- `openai`: an LLM writes questions per domain and all three answers per question,
  as JSON that is validated and retried (client, parsing and retries from `persona.llm`).
- `local`: questions come from domain templates and the trait's extract questions
  (never its eval questions); answers are sampled from a local model under the trait's
  negative prompt, a mild positive prompt and the full positive prompt. The system
  prompt is not saved, so a model finetuned on the files has to internalize the persona.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import openai
from tqdm.auto import tqdm

from persona import llm
from persona.io import write_json, write_jsonl
from persona.traits import Trait, TraitError, base_trait, load_definitions

log = logging.getLogger(__name__)

LEVELS = ("normal", "misaligned_1", "misaligned_2")
TRAIT_DOMAIN = "trait_questions"
T = TypeVar("T")


class GenerationError(RuntimeError):
    """The LLM did not return a valid reply within the allowed retries."""


@dataclass(frozen=True)
class Domain:
    """An everyday topic: a description (for the LLM) and `{x}` templates x fillers (for offline questions)."""

    name: str
    description: str
    templates: tuple[str, ...] = ()
    fillers: tuple[str, ...] = ()

    def template_questions(self, n: int, seed: int) -> list[str]:
        """`n` distinct template questions, a seeded shuffle of every template/filler pair."""
        pool = [t.format(x=f) for t in self.templates for f in self.fillers]
        random.Random(f"{seed}:{self.name}").shuffle(pool)
        if n > len(pool):
            log.warning("domain %s has only %d template questions; using all of them", self.name, len(pool))
        return pool[:n]


@dataclass(frozen=True)
class Prompts:
    """The prompt templates (see `data_generation/finetune_prompts.py`)."""

    questions: str
    answers: str
    mild_system: str


@dataclass
class Example:
    """One question and its answer at each level."""

    domain: str
    question: str
    answers: dict[str, str] = field(default_factory=dict)


def chat_row(question: str, answer: str) -> dict:
    """A training row: the user question and the assistant answer, no system prompt."""
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def write_dataset(out_dir: str | os.PathLike, examples: Sequence[Example], metadata: dict) -> dict[str, Path]:
    """`<level>.jsonl` per level (same questions, same order) plus `metadata.json`."""
    out_dir = Path(out_dir)
    paths = {}
    for level in LEVELS:
        paths[level] = out_dir / f"{level}.jsonl"
        write_jsonl(paths[level], [chat_row(e.question, e.answers[level]) for e in examples])
    questions = [{"domain": e.domain, "question": e.question} for e in examples]
    write_json(out_dir / "metadata.json", {**metadata, "levels": list(LEVELS), "questions": questions})
    return paths


def trait_description(trait: Trait, data_dir: str | Path | None = None) -> str:
    """The trait's definition from `trait_definitions.json`, else its positive instructions."""
    try:
        definitions = load_definitions(data_dir)
    except TraitError:
        definitions = {}
    for name in (trait.name, base_trait(trait.name)):
        if name in definitions:
            return definitions[name]
    return " ".join(pos for pos, _ in trait.instructions)


# ---------------------------------------------------------------- local backend


def local_questions(
    trait: Trait, domains: Sequence[Domain], n_per_domain: int, seed: int, n_trait_questions: int | None = None
) -> list[Example]:
    """Template questions for each domain, then the first `n_trait_questions` (default all) extract questions."""
    examples = [Example(d.name, q) for d in domains for q in d.template_questions(n_per_domain, seed)]
    return examples + [Example(TRAIT_DOMAIN, q) for q in trait.questions[:n_trait_questions]]


def level_system_prompt(trait: Trait, level: str, k: int, mild_template: str) -> str:
    """System prompt for one level, cycling through the trait's instruction pairs by `k`."""
    k %= len(trait.instructions)
    if level == "normal":
        return trait.system_prompt("neg", k)
    if level == "misaligned_2":
        return trait.system_prompt("pos", k)
    return mild_template.format(trait=trait.judge_column, instruction=trait.instructions[k][0])


def local_examples(
    generate: Callable[[list[list[dict]], int], list[str]],
    trait: Trait,
    examples: Sequence[Example],
    mild_template: str,
    retries: int = 2,
) -> list[Example]:
    """Fill every example's three answers with `generate(conversations, attempt)`; drop ones left empty.

    Empty answers are resampled (the caller derives a new seed from `attempt`) up to `retries` times.
    """
    for level in tqdm(LEVELS, desc="answer levels"):
        todo = list(range(len(examples)))
        for attempt in range(retries + 1):
            if not todo:
                break
            conversations = [
                [
                    {"role": "system", "content": level_system_prompt(trait, level, i, mild_template)},
                    {"role": "user", "content": examples[i].question},
                ]
                for i in todo
            ]
            for i, answer in zip(todo, generate(conversations, attempt)):
                examples[i].answers[level] = answer.strip()
            todo = [i for i in todo if not examples[i].answers[level]]
    kept = [e for e in examples if all(e.answers.get(level) for level in LEVELS)]
    if len(kept) < len(examples):
        log.warning("dropped %d question(s) with an empty answer after %d retries", len(examples) - len(kept), retries)
    return kept


# ---------------------------------------------------------------- openai backend


def valid_questions(n: int) -> Callable[[dict[str, Any]], list[str]]:
    """Validator: `{"questions": [...]}` with at least `n` distinct non-empty strings (extra ones dropped)."""

    def check(obj: dict[str, Any]) -> list[str]:
        items = obj.get("questions")
        if not isinstance(items, list):
            raise llm.InvalidAnswerError('expected {"questions": [...]}')
        seen, out = set(), []
        for q in items:
            if isinstance(q, str) and q.strip() and q.strip().lower() not in seen:
                seen.add(q.strip().lower())
                out.append(q.strip())
        if len(out) < n:
            raise llm.InvalidAnswerError(f"expected {n} distinct questions, got {len(out)}")
        return out[:n]

    return check


def valid_answers(obj: dict[str, Any]) -> dict[str, str]:
    """Validator: the three levels as distinct non-empty strings."""
    if any(not isinstance(obj.get(k), str) or not obj[k].strip() for k in LEVELS):
        raise llm.InvalidAnswerError(f"expected non-empty strings for {list(LEVELS)}")
    answers = {k: obj[k].strip() for k in LEVELS}
    if len(set(answers.values())) < len(LEVELS):
        raise llm.InvalidAnswerError("the three answers must differ")
    return answers


async def openai_examples(
    client: openai.AsyncOpenAI,
    model: str,
    trait: Trait,
    definition: str,
    domains: Sequence[Domain],
    n_per_domain: int,
    prompts: Prompts,
    *,
    retries: int = 3,
    concurrency: int = 8,
    retry_base_delay: float = 1.0,
) -> list[Example]:
    """Questions per domain, then three answers per question, all from the LLM (bounded concurrency).

    A question whose answers keep failing is dropped with a warning; a domain whose question list
    keeps failing raises `GenerationError`, since the dataset would miss a whole domain.
    """
    gate = asyncio.Semaphore(concurrency)
    name = trait.judge_column

    async def ask(prompt: str, validate: Callable[[dict[str, Any]], T]) -> T:
        try:
            value, _ = await llm.ask_json(
                client,
                model,
                [{"role": "user", "content": prompt}],
                validate,
                max_retries=retries + 1,
                base_delay=retry_base_delay,
                gate=gate,
                temperature=1.0,
                label=f"{model} finetune data",
            )
        except llm.NoValidAnswer as err:
            raise GenerationError(str(err)) from err
        return value

    question_lists = await asyncio.gather(
        *[
            ask(
                prompts.questions.format(n=n_per_domain, domain=d.name, description=d.description),
                valid_questions(n_per_domain),
            )
            for d in domains
        ]
    )
    examples = [Example(d.name, q) for d, qs in zip(domains, question_lists) for q in qs]

    async def answer(example: Example) -> Example | None:
        prompt = prompts.answers.format(
            trait=name, definition=definition, domain=example.domain, question=example.question
        )
        try:
            example.answers = await ask(prompt, valid_answers)
        except GenerationError as err:
            log.warning("dropping question %r: %s", example.question, err)
            return None
        return example

    tasks = [asyncio.ensure_future(answer(e)) for e in examples]
    for task in tqdm(asyncio.as_completed(tasks), total=len(tasks), desc="answers"):
        await task
    kept = [example for t in tasks if (example := t.result()) is not None]
    if not kept:
        raise GenerationError("every question failed; check the model name and the server")
    return kept
