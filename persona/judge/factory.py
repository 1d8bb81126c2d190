"""One judge-selection rule for every entry point: `make_judge`, and `JudgeSettings` behind the judge flags.

Spec (`judge_model`):
- unset: `gpt-4.1-mini-2025-04-14` when OPENAI_API_KEY is set, else `likelihood`;
- `likelihood`: the likelihood proxy judge on the evaluated model;
- `likelihood:<model>`: the likelihood judge on another model (any `load_model` spec);
- `local:<model>`: a local Hugging Face model as an exact logprob judge;
- anything else: a model name on the OpenAI API, or on an OpenAI-compatible server when
  `judge_base_url` (or OPENAI_BASE_URL) is given.

Each kind of judge is one `JudgeKind` in `JUDGE_KINDS`: how it is built from a spec and what
its sidecar says about it (method text, proxy or LLM judge). `register_judge` adds a kind from
outside the package (`kind:<model>` specs then select it).

The judge is never silent: when the proxy is picked because OPENAI_API_KEY is unset, that is
said once per process (a logged warning), and scored files get a `.judge.json` sidecar (`sidecar`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
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
from persona.judge.prompts import (
    COHERENCE,
    ORIGINAL_COHERENCE_KEY,
    check_template,
    coherence_prompt,
    prompt_in_python,
    trait_prompt,
)
from persona.judge.runner import Judge
from persona.models import LoadedModel, load_model

if TYPE_CHECKING:
    from persona.traits import Trait

log = logging.getLogger(__name__)

DEFAULT_OPENAI_JUDGE = DEFAULT_OPENAI_MODEL
LIKELIHOOD = "likelihood"
LOCAL_PREFIX = "local:"


PROXY_NOTICE = (
    "judge: OPENAI_API_KEY is not set, so answers are scored by the offline likelihood proxy judge, "
    "not an LLM judge (see docs/judges.md, 'Offline judging is a proxy'); pass `judge_model` to choose one"
)


@lru_cache(maxsize=1)
def announce_proxy() -> None:
    """Say once per process (a warning, on stderr) that scores come from the proxy judge."""
    log.warning(PROXY_NOTICE)


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


def load_coherence_prompt(path: str | os.PathLike) -> str:
    """A user's coherence judge template, checked for its placeholders.

    A text file is the template itself; a `.py` file is read as the original study's
    `eval/prompts.py`, taking the string assigned to `Prompts["coherence_0_100"]` (never run).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"coherence_prompt {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        try:
            found = prompt_in_python(text)
        except SyntaxError as err:
            raise ValueError(f"coherence_prompt {path}: not valid Python (line {err.lineno})") from None
        if found is None:
            raise ValueError(
                f"coherence_prompt {path}: no string assigned to [{ORIGINAL_COHERENCE_KEY!r}] "
                "(give the original study's eval/prompts.py, or a text file holding the template)"
            )
        text = found
    return check_template(text, f"coherence_prompt {path}")


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


@dataclass(frozen=True)
class JudgeRequest:
    """Everything a judge kind may need to build one judge for one metric."""

    spec: str  # the whole judge spec, e.g. "local:Qwen/Qwen2.5-7B-Instruct"
    model: str  # the part after "<kind>:" ("" when absent)
    trait: Trait | None
    metric: str
    template: Callable[[str], str]  # eval type -> the judge prompt template for this metric
    base_url: str | None
    eval_model: LoadedModel | None
    use_cache: bool
    eval_type: str
    number_tokens: str
    prefill: str


@dataclass(frozen=True)
class JudgeKind:
    """One kind of judge: how specs select and build it, and what its sidecar records.

    `prefix` selects specs equal to it or starting with `prefix:`; the kind without a prefix
    (the OpenAI API) takes every other spec. `proxy` judges score without a judge prompt (the
    sidecar hashes the trait's instructions instead), and `method` says how scores are made.
    """

    name: str
    prefix: str | None
    build: Callable[[JudgeRequest], Judge]
    method: str
    proxy: bool = False


LLM_METHOD = "LLM judge: expected score from the answer's logprobs"
JUDGE_KINDS: dict[str, JudgeKind] = {}


def register_judge(kind: JudgeKind) -> JudgeKind:
    """Add (or replace) a judge kind; specs `<prefix>` and `<prefix>:<model>` then build it."""
    JUDGE_KINDS[kind.name] = kind
    return kind


def judge_kind(spec: str) -> JudgeKind:
    """The kind a spec selects: the registered prefix it names, else the API judge."""
    prefix = spec.partition(":")[0]
    for kind in JUDGE_KINDS.values():
        if kind.prefix is not None and kind.prefix == prefix:
            return kind
    return next(kind for kind in JUDGE_KINDS.values() if kind.prefix is None)


def is_proxy(spec: str) -> bool:
    return judge_kind(spec).proxy


def _likelihood(request: JudgeRequest) -> Judge:
    eval_model = _judge_model(request.model) if request.model else request.eval_model
    if eval_model is None:
        raise ValueError(
            "judge_model likelihood scores with the evaluated model, but none was given; "
            "pass eval_model or use likelihood:<model>"
        )
    return LikelihoodJudge(eval_model, metric=request.metric, trait=request.trait, use_cache=request.use_cache)


def _local(request: JudgeRequest) -> Judge:
    if not request.model:
        raise ValueError("judge_model local: needs a model, e.g. local:Qwen/Qwen2.5-7B-Instruct")
    return LocalLogprobJudge(
        _judge_model(request.model),
        request.template(request.eval_type),
        eval_type=request.eval_type,
        prefill=request.prefill,
        use_cache=request.use_cache,
    )


def _openai(request: JudgeRequest) -> Judge:
    return OpenAIJudge(
        request.spec,
        request.template,
        eval_type=request.eval_type,
        base_url=request.base_url,
        use_cache=request.use_cache,
        number_tokens=request.number_tokens,
    )


register_judge(
    JudgeKind(
        "likelihood",
        LIKELIHOOD,
        _likelihood,
        "likelihood proxy: log p(answer | pos prompts) - log p(answer | neg prompts); not an LLM judge",
        proxy=True,
    )
)
register_judge(JudgeKind("local", LOCAL_PREFIX.rstrip(":"), _local, LLM_METHOD))
register_judge(JudgeKind("openai", None, _openai, LLM_METHOD))


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
    kind = judge_kind(spec)
    request = JudgeRequest(
        spec=spec,
        model=spec.partition(":")[2] if kind.prefix is not None else spec,
        trait=trait,
        metric=metric,
        template=partial(_template, trait, metric, coherence_template),
        base_url=base_url,
        eval_model=eval_model,
        use_cache=use_cache,
        eval_type=eval_type,
        number_tokens=number_tokens,
        prefill=prefill,
    )
    return kind.build(request)


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
    max_concurrent_judges: int = 100  # the original study's default


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
