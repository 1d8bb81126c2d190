"""Turn trait definitions into artifacts with any OpenAI-compatible chat endpoint.

For a base trait the model writes 5 instruction pairs, 40 questions and a judge prompt;
the questions are split 20/20 into the extract and eval artifacts. A variant
(`humble_2`) gets its own 5 pairs and reuses its base trait's questions and judge prompt,
so bases are generated first. Answers are validated with the same rules as
`persona.traits`; unusable answers and transient API errors are retried through
`persona.llm`. The command line is `data_generation/generate_trait.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import openai
from tqdm.auto import tqdm

from persona import llm, traits
from persona.defaults import DEFAULT_OPENAI_MODEL
from persona.io import write_json

log = logging.getLogger(__name__)

DEFAULT_MODEL = DEFAULT_OPENAI_MODEL
N_TOTAL_QUESTIONS = 2 * traits.N_QUESTIONS


@dataclass
class Outcome:
    """What happened to one trait; printed in the final summary."""

    name: str
    status: Literal["made", "skipped", "failed"]
    attempts: int = 0
    reason: str = ""


# ---------------------------------------------------------------- validating answers


def _checked(artifact: dict[str, Any], name: str, version: str) -> dict[str, Any]:
    try:
        traits.parse_artifact(artifact, name=name, source=f"model answer for {name} ({version})")
    except traits.TraitError as e:
        raise llm.InvalidAnswerError(str(e)) from None
    return artifact


def base_artifacts(data: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """Split a base-trait answer into validated extract/eval artifacts (first 40 distinct questions).

    Raises `llm.InvalidAnswerError`, so a bad answer is asked for again.
    """
    questions = data.get("questions")
    if not isinstance(questions, list):
        raise llm.InvalidAnswerError(f"'questions' must be a list, got {type(questions).__name__}")
    distinct: dict[str, str] = {}
    for q in questions:
        if isinstance(q, str) and q.strip():
            distinct.setdefault(traits.normalize_question(q), q.strip())
    if len(distinct) < N_TOTAL_QUESTIONS:
        raise llm.InvalidAnswerError(f"'questions' has {len(distinct)} distinct questions, need {N_TOTAL_QUESTIONS}")
    kept = list(distinct.values())[:N_TOTAL_QUESTIONS]
    half = traits.N_QUESTIONS
    return {
        version: _checked(
            {"instruction": data.get("instruction"), "questions": qs, "eval_prompt": data.get("eval_prompt")},
            name,
            version,
        )
        for version, qs in (("extract", kept[:half]), ("eval", kept[half:]))
    }


def variant_artifacts(data: dict[str, Any], name: str, bases: dict[str, traits.Trait]) -> dict[str, dict[str, Any]]:
    """Combine a variant's own instruction pairs with its base's questions and judge prompt.

    Pairs identical to the base's are rejected: a variant must differ to be worth measuring.
    """
    out = {}
    for version, base in bases.items():
        artifact: dict[str, Any] = {
            "instruction": data.get("instruction"),
            "questions": base.questions,
            "eval_prompt": base.eval_prompt,
        }
        out[version] = _checked(artifact, name, version)
        if [(p["pos"], p["neg"]) for p in artifact["instruction"]] == base.instructions:
            raise llm.InvalidAnswerError(f"instruction pairs are identical to {base.name}'s")
    return out


def select_traits(definitions: dict[str, str], requested: Sequence[str], source: object) -> list[str]:
    """`requested` in order without repeats (all defined traits when empty); unknown names are a TraitError."""
    names = list(dict.fromkeys(requested or definitions))
    unknown = [n for n in names if n not in definitions]
    if unknown:
        raise traits.TraitError(f"{source}: no definition for {unknown}; defined: {', '.join(definitions)}")
    return names


# ---------------------------------------------------------------- generation


@dataclass(frozen=True)
class TraitPrompts:
    """The templates that ask for artifacts (the project's own are in `data_generation/prompts.py`)."""

    system: str
    artifact: str  # formatted with trait, definition, n_pairs, n_questions
    variant: str  # formatted with trait, base, definition, n_pairs


@dataclass
class Generator:
    """Generates artifacts for many traits concurrently, with retries and skip/overwrite rules."""

    client: openai.AsyncOpenAI
    model: str
    definitions: dict[str, str]
    prompts: TraitPrompts
    extract_dir: Path
    eval_dir: Path
    overwrite: bool = False
    max_retries: int = 4
    retry_base_delay: float = 2.0
    max_concurrency: int = 8

    def __post_init__(self) -> None:
        self._semaphore = asyncio.Semaphore(self.max_concurrency)

    def paths(self, name: str) -> dict[str, Path]:
        """Where the extract and eval artifacts of `name` go."""
        return {"extract": self.extract_dir / f"{name}.json", "eval": self.eval_dir / f"{name}.json"}

    async def run(self, names: Sequence[str]) -> list[Outcome]:
        """Bases first (variants need their questions), then variants; outcomes in input order."""
        variants = [n for n in names if traits.base_trait(n) != n]
        bases = [n for n in names if n not in variants]
        done: dict[str, Outcome] = {}
        with tqdm(total=len(names), desc="traits", unit="trait") as bar:
            for group in (bases, variants):
                for outcome in await asyncio.gather(*(self._one(n, bar) for n in group)):
                    done[outcome.name] = outcome
        return [done[n] for n in names]

    async def _one(self, name: str, bar: tqdm) -> Outcome:
        try:
            return await self.generate(name)
        finally:
            bar.update(1)

    async def generate(self, name: str) -> Outcome:
        """Make the two files for one trait, or say why not."""
        paths = self.paths(name)
        existing = [str(p) for p in paths.values() if p.exists()]
        if existing and not self.overwrite:
            if len(existing) == len(paths):
                return Outcome(name, "skipped", reason="files exist (pass `overwrite` to regenerate)")
            return Outcome(name, "failed", reason=f"only {existing[0]} exists; pass `overwrite` to regenerate both")
        base = traits.base_trait(name)
        if base == name:
            prompt = self.prompts.artifact.format(
                trait=name,
                definition=self.definitions[name],
                n_pairs=traits.N_INSTRUCTIONS,
                n_questions=N_TOTAL_QUESTIONS,
            )
            build: Callable[[dict[str, Any]], dict[str, dict[str, Any]]] = partial(base_artifacts, name=name)
        else:
            try:
                parents = {v: traits.load_trait(str(p)) for v, p in self.paths(base).items()}
            except traits.TraitError as e:
                return Outcome(name, "failed", reason=f"base trait {base!r} has no valid artifacts: {e}")
            prompt = self.prompts.variant.format(
                trait=name, base=base, definition=self.definitions[name], n_pairs=traits.N_INSTRUCTIONS
            )
            build = partial(variant_artifacts, name=name, bases=parents)
        messages = [{"role": "system", "content": self.prompts.system}, {"role": "user", "content": prompt}]
        try:
            artifacts, attempts = await llm.ask_json(
                self.client,
                self.model,
                messages,
                build,
                max_retries=self.max_retries,
                base_delay=self.retry_base_delay,
                gate=self._semaphore,
                json_mode=True,
                label=name,
            )
        except llm.NoValidAnswer as e:
            return Outcome(name, "failed", e.attempts, _describe(e.error))
        for version, path in paths.items():
            write_json(path, artifacts[version])
        return Outcome(name, "made", attempts)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def format_summary(outcomes: Sequence[Outcome]) -> str:
    """Counts per status, then one line per trait (attempts for made/failed, reasons for the rest)."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("made", "skipped", "failed")}
    lines = [", ".join(f"{s} {n}" for s, n in counts.items())]
    width = max((len(o.name) for o in outcomes), default=0)
    for o in outcomes:
        tries = f"{o.attempts} attempt{'s' * (o.attempts != 1)}" if o.attempts else ""
        detail = "; ".join(part for part in (tries, o.reason[:300]) if part)
        lines.append(f"  {o.status:<8} {o.name:<{width}}  {detail}".rstrip())
    return "\n".join(lines)


def generate_traits(
    definitions_path: Path,
    requested: Sequence[str],
    *,
    prompts: TraitPrompts,
    extract_dir: Path,
    eval_dir: Path,
    model: str = DEFAULT_MODEL,
    base_url: str | None = None,
    timeout: float = 180.0,
    overwrite: bool = False,
    max_retries: int = 4,
    retry_base_delay: float = 2.0,
    max_concurrency: int = 8,
) -> list[Outcome]:
    """Generate the `requested` traits (all when empty) and return one outcome per trait.

    Setup problems (unreadable definitions, unknown trait, missing API key) raise
    `TraitError` or `MissingSettingError` before any request is sent; per-trait failures
    are outcomes, not exceptions.
    """
    definitions = traits.load_definitions(definitions_path)
    names = select_traits(definitions, requested, definitions_path)
    client = llm.make_async_client(base_url, timeout=timeout, purpose="generating trait artifacts with the OpenAI API")
    generator = Generator(
        client,
        model,
        definitions,
        prompts,
        extract_dir,
        eval_dir,
        overwrite=overwrite,
        max_retries=max_retries,
        retry_base_delay=retry_base_delay,
        max_concurrency=max_concurrency,
    )

    async def run() -> list[Outcome]:
        async with client:
            return await generator.run(names)

    return llm.run_coroutine(run)
