"""Turn trait definitions into artifacts with any OpenAI-compatible chat endpoint.

    python -m data_generation.generate_trait --traits humble humble_2 \\
        --model gpt-4.1-mini-2025-04-14 [--base-url http://localhost:8000/v1]

For a base trait the model writes 5 instruction pairs, 40 questions and a judge prompt;
the questions are split 20/20 into `trait_data_extract/` and `trait_data_eval/`. A
variant (`humble_2`) gets its own 5 pairs and reuses its base trait's questions and
judge prompt, so bases are generated first. Answers are validated with the same rules
as `persona.traits`; bad or failed answers are retried with exponential backoff.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import openai
from tqdm.auto import tqdm

from data_generation.prompts import ARTIFACT_PROMPT, SYSTEM_PROMPT, VARIANT_PROMPT
from persona import settings, traits
from persona.cli import setup_logging, split_list
from persona.io import write_json

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4.1-mini-2025-04-14"
N_TOTAL_QUESTIONS = 2 * traits.N_QUESTIONS
RETRYABLE = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)


class GenerationError(ValueError):
    """The model's answer is unusable (not JSON, wrong shape, too few questions)."""


@dataclass
class Outcome:
    """What happened to one trait; printed in the final summary."""

    name: str
    status: Literal["made", "skipped", "failed"]
    attempts: int = 0
    reason: str = ""


# ---------------------------------------------------------------- validating answers


def parse_json_answer(text: str | None) -> dict[str, Any]:
    """The JSON object in a model answer (tolerates a ```json fence around it)."""
    if not text or not text.strip():
        raise GenerationError("empty answer")
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[-1].rsplit("```", 1)[0]
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        raise GenerationError(f"answer is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise GenerationError(f"answer is JSON {type(data).__name__}, expected an object")
    return data


def _checked(artifact: dict[str, Any], name: str, version: str) -> dict[str, Any]:
    try:
        traits.parse_artifact(artifact, name=name, source=f"model answer for {name} ({version})")
    except traits.TraitError as e:
        raise GenerationError(str(e)) from None
    return artifact


def base_artifacts(data: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """Split a base-trait answer into validated extract/eval artifacts (first 40 distinct questions)."""
    questions = data.get("questions")
    if not isinstance(questions, list):
        raise GenerationError(f"'questions' must be a list, got {type(questions).__name__}")
    distinct: dict[str, str] = {}
    for q in questions:
        if isinstance(q, str) and q.strip():
            distinct.setdefault(traits.normalize_question(q), q.strip())
    if len(distinct) < N_TOTAL_QUESTIONS:
        raise GenerationError(f"'questions' has {len(distinct)} distinct questions, need {N_TOTAL_QUESTIONS}")
    kept = list(distinct.values())[:N_TOTAL_QUESTIONS]
    half = traits.N_QUESTIONS
    return {version: _checked({"instruction": data.get("instruction"), "questions": qs,
                               "eval_prompt": data.get("eval_prompt")}, name, version)
            for version, qs in (("extract", kept[:half]), ("eval", kept[half:]))}


def variant_artifacts(data: dict[str, Any], name: str, bases: dict[str, traits.Trait]) -> dict[str, dict[str, Any]]:
    """Combine a variant's own instruction pairs with its base's questions and judge prompt."""
    out = {}
    for version, base in bases.items():
        artifact = {"instruction": data.get("instruction"), "questions": base.questions,
                    "eval_prompt": base.eval_prompt}
        out[version] = _checked(artifact, name, version)
        if [(p["pos"], p["neg"]) for p in artifact["instruction"]] == base.instructions:
            raise GenerationError(f"instruction pairs are identical to {base.name}'s")
    return out


# ---------------------------------------------------------------- generation


@dataclass
class Generator:
    """Generates artifacts for many traits concurrently, with retries and skip/overwrite rules."""

    client: openai.AsyncOpenAI
    model: str
    definitions: dict[str, str]
    extract_dir: Path
    eval_dir: Path
    overwrite: bool = False
    max_retries: int = 4
    retry_base_delay: float = 2.0
    max_concurrency: int = 8

    def __post_init__(self) -> None:
        self._semaphore = asyncio.Semaphore(self.max_concurrency)

    def paths(self, name: str) -> dict[str, Path]:
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
                return Outcome(name, "skipped", reason="files exist (pass --overwrite to regenerate)")
            return Outcome(name, "failed", reason=f"only {existing[0]} exists; pass --overwrite to regenerate both")
        base = traits.base_trait(name)
        if base == name:
            prompt = ARTIFACT_PROMPT.format(trait=name, definition=self.definitions[name],
                                            n_pairs=traits.N_INSTRUCTIONS, n_questions=N_TOTAL_QUESTIONS)
            build: Callable[[dict[str, Any]], dict[str, dict[str, Any]]] = partial(base_artifacts, name=name)
        else:
            try:
                parents = {v: traits.load_trait(str(p)) for v, p in self.paths(base).items()}
            except traits.TraitError as e:
                return Outcome(name, "failed", reason=f"base trait {base!r} has no valid artifacts: {e}")
            prompt = VARIANT_PROMPT.format(trait=name, base=base, definition=self.definitions[name],
                                           n_pairs=traits.N_INSTRUCTIONS)
            build = partial(variant_artifacts, name=name, bases=parents)
        artifacts, attempts, error = await self._ask(name, prompt, build)
        if artifacts is None:
            return Outcome(name, "failed", attempts, error)
        for version, path in paths.items():
            write_json(path, artifacts[version])
        return Outcome(name, "made", attempts)

    async def _ask(self, name: str, prompt: str, build: Callable[[dict[str, Any]], Any]) -> tuple[Any, int, str]:
        """Ask until `build` accepts an answer; (result or None, attempts made, last error)."""
        error = ""
        for attempt in range(1, self.max_retries + 1):
            try:
                async with self._semaphore:
                    response = await self.client.chat.completions.create(
                        model=self.model, response_format={"type": "json_object"},
                        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}])
                return build(parse_json_answer(response.choices[0].message.content)), attempt, ""
            except (GenerationError, *RETRYABLE) as e:
                error = f"{type(e).__name__}: {e}"
            except openai.APIStatusError as e:  # 4xx other than 429: retrying will not help
                return None, attempt, f"{type(e).__name__}: {e}"
            if attempt < self.max_retries:
                delay = self.retry_base_delay * 2 ** (attempt - 1)
                log.warning("%s: attempt %d/%d failed (%s); retrying in %.3gs",
                            name, attempt, self.max_retries, error[:200], delay)
                await asyncio.sleep(delay)
        return None, self.max_retries, error


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


# ---------------------------------------------------------------- command line


def make_client(base_url: str | None, timeout: float) -> openai.AsyncOpenAI:
    """A client with our own retry loop in charge (max_retries=0); local servers need no real key."""
    key = settings.get("OPENAI_API_KEY")
    if not key:
        if not base_url:
            key = settings.require("OPENAI_API_KEY", "generating trait artifacts with the OpenAI API")
        key = "unused-by-local-server"
    return openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=timeout)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    data = traits.DEFAULT_DATA_DIR
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trait-definitions", type=Path, default=data / traits.DEFINITIONS_FILE,
                   help="JSON object: trait name -> definition (default: %(default)s)")
    p.add_argument("--extract-dir", type=Path, default=data / "trait_data_extract",
                   help="where extract artifacts go (default: %(default)s)")
    p.add_argument("--eval-dir", type=Path, default=data / "trait_data_eval",
                   help="where eval artifacts go (default: %(default)s)")
    p.add_argument("--traits", nargs="+", default=None,
                   help="names to generate (default: every trait in the definitions file)")
    p.add_argument("--overwrite", action="store_true", help="regenerate traits whose files exist")
    p.add_argument("--model", default=DEFAULT_MODEL, help="chat model (default: %(default)s)")
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (default: $OPENAI_BASE_URL, else OpenAI)")
    p.add_argument("--max-concurrency", type=int, default=8, help="requests in flight at once (default: %(default)s)")
    p.add_argument("--max-retries", type=int, default=4, help="attempts per trait before giving up (default: %(default)s)")
    p.add_argument("--retry-base-delay", type=float, default=2.0,
                   help="seconds before the first retry; doubles each time (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds per request (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    if args.max_concurrency < 1 or args.max_retries < 1 or args.retry_base_delay < 0:
        p.error("--max-concurrency and --max-retries must be >= 1, --retry-base-delay >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # the openai client's HTTP layer logs every request
    try:
        definitions = traits.load_definitions(args.trait_definitions)
        names = split_list(args.traits) or list(definitions)
        unknown = [n for n in names if n not in definitions]
        if unknown:
            raise traits.TraitError(f"{args.trait_definitions}: no definition for {unknown}; "
                                    f"defined: {', '.join(definitions)}")
        client = make_client(args.base_url or settings.get("OPENAI_BASE_URL"), args.timeout)
    except (traits.TraitError, settings.MissingSettingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    generator = Generator(client, args.model, definitions, args.extract_dir, args.eval_dir,
                          overwrite=args.overwrite, max_retries=args.max_retries,
                          retry_base_delay=args.retry_base_delay, max_concurrency=args.max_concurrency)
    outcomes = asyncio.run(_run(generator, list(dict.fromkeys(names))))
    print(format_summary(outcomes))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


async def _run(generator: Generator, names: list[str]) -> list[Outcome]:
    async with generator.client:
        return await generator.run(names)


if __name__ == "__main__":
    sys.exit(main())
