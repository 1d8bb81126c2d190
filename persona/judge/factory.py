"""One judge-selection rule for every entry point: `make_judge`, and `JudgeSettings` behind the judge flags.

Spec (`judge_model`):
- unset: `gpt-4.1-mini-2025-04-14` when OPENAI_API_KEY is set, else `likelihood`;
- `likelihood`: the likelihood proxy judge on the evaluated model;
- `likelihood:<model>`: the likelihood judge on another model (any `load_model` spec);
- `local:<model>`: a local Hugging Face model as an exact logprob judge;
- anything else: a model name on the OpenAI API, or on an OpenAI-compatible server when
  `judge_base_url` (or OPENAI_BASE_URL) is given.

The judge is never silent: when the proxy is picked because OPENAI_API_KEY is unset, that is
said once per process on stderr, and scored files get a `.judge.json` sidecar (`sidecar`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

from persona import settings
from persona.defaults import DEFAULT_OPENAI_MODEL
from persona.judge.aggregate import check_eval_type
from persona.judge.likelihood import LikelihoodJudge
from persona.judge.local_judge import LocalLogprobJudge
from persona.judge.openai_judge import OpenAIJudge
from persona.judge.prompts import COHERENCE, check_template, coherence_prompt, trait_prompt
from persona.judge.runner import Judge
from persona.models import LoadedModel, load_model

if TYPE_CHECKING:
    from persona.traits import Trait

DEFAULT_OPENAI_JUDGE = DEFAULT_OPENAI_MODEL
LIKELIHOOD = "likelihood"
LOCAL_PREFIX = "local:"


PROXY_NOTICE = (
    "judge: OPENAI_API_KEY is not set, so answers are scored by the offline likelihood proxy judge, "
    "not an LLM judge (see README, 'Offline judging is a proxy'); pass --judge_model to choose one"
)


@lru_cache(maxsize=1)
def announce_proxy() -> None:
    """Say once per process, on stderr, that scores come from the proxy judge."""
    print(PROXY_NOTICE, file=sys.stderr)


def default_spec() -> str:
    if settings.get("OPENAI_API_KEY"):
        return DEFAULT_OPENAI_JUDGE
    announce_proxy()
    return LIKELIHOOD


def resolve_spec(spec: str | None, base_url: str | None = None) -> str:
    """The judge spec that will run: `spec`, or the default (a server URL needs an explicit model name)."""
    if spec is not None:
        return spec
    if base_url or settings.get("OPENAI_BASE_URL"):
        raise ValueError(
            f"judge_base_url {base_url or settings.get('OPENAI_BASE_URL')} needs judge_model: "
            "the model name the server serves"
        )
    return default_spec()


def is_proxy(spec: str) -> bool:
    return spec == LIKELIHOOD or spec.startswith(LIKELIHOOD + ":")


def load_coherence_prompt(path: str | os.PathLike) -> str:
    """A user's coherence judge template (e.g. the original study's), checked for its placeholders."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"coherence_prompt {path} does not exist")
    return check_template(path.read_text(encoding="utf-8"), f"coherence_prompt {path}")


@lru_cache(maxsize=2)
def _judge_model(spec: str) -> LoadedModel:
    """Judge models load once per process (the trait and coherence judges share one)."""
    return load_model(spec)


def _template(trait: Trait | None, metric: str, coherence_template: str | None, eval_type: str) -> str:
    if metric != COHERENCE:
        if trait is None:
            raise ValueError(f"judging {metric!r} needs the trait's eval prompt")
        return trait_prompt(trait.eval_prompt, eval_type)
    if coherence_template is None:
        return coherence_prompt(eval_type)
    if eval_type != "0_100":
        raise ValueError(
            f"a custom coherence prompt is a 0_100 template; it cannot be used with eval type "
            f"{eval_type!r} (drop coherence_prompt or use judge_eval_type 0_100)"
        )
    return coherence_template


def make_judge(
    spec: str | None,
    *,
    trait: Trait | None,
    metric: str,
    base_url: str | None = None,
    eval_model: LoadedModel | None = None,
    use_cache: bool = True,
    eval_type: str = "0_100",
    number_tokens: str = "auto",
    prefill: str = "",
    coherence_template: str | None = None,
) -> Judge:
    """A judge for `metric` (the trait's judge column, or "coherence"); see the module docstring.

    `coherence_template` replaces the built-in coherence prompt (LLM judges; the proxy uses no prompt).
    """
    check_eval_type(eval_type)
    if metric != COHERENCE:
        if trait is None:
            raise ValueError(f"judging {metric!r} needs the trait (its eval prompt and instructions)")
        if metric not in (trait.judge_column, trait.name):
            raise ValueError(
                f"metric {metric!r} is neither 'coherence' nor trait {trait.name!r}'s judge "
                f"column {trait.judge_column!r}"
            )
    base_url = base_url or settings.get("OPENAI_BASE_URL")
    spec = resolve_spec(spec, base_url)
    template = partial(_template, trait, metric, coherence_template)
    if is_proxy(spec):
        name = spec.partition(":")[2]
        if name:
            eval_model = _judge_model(name)
        elif eval_model is None:
            raise ValueError(
                "judge_model likelihood scores with the evaluated model, but none was given; "
                "pass eval_model or use likelihood:<model>"
            )
        return LikelihoodJudge(eval_model, metric=metric, trait=trait, use_cache=use_cache)
    if spec.startswith(LOCAL_PREFIX):
        name = spec[len(LOCAL_PREFIX) :]
        if not name:
            raise ValueError("judge_model local: needs a model, e.g. local:Qwen/Qwen2.5-7B-Instruct")
        return LocalLogprobJudge(
            _judge_model(name), template(eval_type), eval_type=eval_type, prefill=prefill, use_cache=use_cache
        )
    return OpenAIJudge(
        spec, template, eval_type=eval_type, base_url=base_url, use_cache=use_cache, number_tokens=number_tokens
    )


@dataclass(frozen=True)
class JudgeSettings:
    """How to judge: the fields mirror the command-line judge flags one to one (`persona.cli.add_judge_args`)."""

    judge_model: str | None = None  # None: the default rule (see the module docstring)
    judge_base_url: str | None = None
    judge_eval_type: str = "0_100"
    judge_number_tokens: str = "auto"
    judge_prefill: str = ""
    coherence_prompt: str | None = None  # a template file with {question} and {answer}
    no_judge_cache: bool = False
    max_concurrent_judges: int = 8


def make_judges(settings: JudgeSettings, *, trait: Trait, eval_model: LoadedModel | None = None) -> dict[str, Judge]:
    """{trait judge column: judge, "coherence": judge} for `settings`."""
    coherence = load_coherence_prompt(settings.coherence_prompt) if settings.coherence_prompt else None
    return {
        metric: make_judge(
            settings.judge_model,
            trait=trait,
            metric=metric,
            base_url=settings.judge_base_url,
            eval_model=eval_model,
            use_cache=not settings.no_judge_cache,
            eval_type=settings.judge_eval_type,
            number_tokens=settings.judge_number_tokens,
            prefill=settings.judge_prefill,
            coherence_template=coherence,
        )
        for metric in (trait.judge_column, COHERENCE)
    }
