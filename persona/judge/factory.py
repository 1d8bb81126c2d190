"""One judge-selection rule for every CLI: `make_judge` and the `--judge_*` flags.

Spec (`--judge_model`):
- unset: `gpt-4.1-mini-2025-04-14` when OPENAI_API_KEY is set, else `likelihood`;
- `likelihood`: the likelihood proxy judge on the evaluated model;
- `likelihood:<model>`: the likelihood judge on another model (any `load_model` spec);
- `local:<model>`: a local Hugging Face model as an exact logprob judge;
- anything else: a model name on the OpenAI API, or on an OpenAI-compatible server when
  `--judge_base_url` (or OPENAI_BASE_URL) is given.
"""

from __future__ import annotations

import argparse
from functools import lru_cache, partial
from typing import TYPE_CHECKING

from persona import settings
from persona.judge.aggregate import EVAL_TYPES, check_eval_type
from persona.judge.likelihood import LikelihoodJudge
from persona.judge.local_judge import LocalLogprobJudge
from persona.judge.openai_judge import NUMBER_TOKENS, OpenAIJudge
from persona.judge.prompts import COHERENCE, coherence_prompt, trait_prompt
from persona.judge.runner import Judge
from persona.models import LoadedModel, load_model

if TYPE_CHECKING:
    from persona.traits import Trait

DEFAULT_OPENAI_JUDGE = "gpt-4.1-mini-2025-04-14"
LIKELIHOOD = "likelihood"
LOCAL_PREFIX = "local:"


def default_spec() -> str:
    return DEFAULT_OPENAI_JUDGE if settings.get("OPENAI_API_KEY") else LIKELIHOOD


@lru_cache(maxsize=2)
def _judge_model(spec: str) -> LoadedModel:
    """Judge models load once per process (the trait and coherence judges share one)."""
    return load_model(spec)


def _template(trait: Trait | None, metric: str, eval_type: str) -> str:
    return coherence_prompt(eval_type) if metric == COHERENCE else trait_prompt(trait.eval_prompt, eval_type)


def make_judge(spec: str | None, *, trait: Trait | None, metric: str, base_url: str | None = None,
               eval_model: LoadedModel | None = None, use_cache: bool = True, eval_type: str = "0_100",
               number_tokens: str = "auto", prefill: str = "") -> Judge:
    """A judge for `metric` (the trait's judge column, or "coherence"); see the module docstring."""
    check_eval_type(eval_type)
    if metric != COHERENCE:
        if trait is None:
            raise ValueError(f"judging {metric!r} needs the trait (its eval prompt and instructions)")
        if metric not in (trait.judge_column, trait.name):
            raise ValueError(f"metric {metric!r} is neither 'coherence' nor trait {trait.name!r}'s judge "
                             f"column {trait.judge_column!r}")
    base_url = base_url or settings.get("OPENAI_BASE_URL")
    if spec is None:
        if base_url:
            raise ValueError(f"--judge_base_url {base_url} needs --judge_model: the model name the server serves")
        spec = default_spec()
    if spec == LIKELIHOOD or spec.startswith(LIKELIHOOD + ":"):
        name = spec.partition(":")[2]
        if name:
            eval_model = _judge_model(name)
        elif eval_model is None:
            raise ValueError("--judge_model likelihood scores with the evaluated model, but none was given; "
                             "pass eval_model or use likelihood:<model>")
        return LikelihoodJudge(eval_model, metric=metric, trait=trait, use_cache=use_cache)
    if spec.startswith(LOCAL_PREFIX):
        name = spec[len(LOCAL_PREFIX):]
        if not name:
            raise ValueError("--judge_model local: needs a model, e.g. local:Qwen/Qwen2.5-7B-Instruct")
        return LocalLogprobJudge(_judge_model(name), _template(trait, metric, eval_type), eval_type=eval_type,
                                 prefill=prefill, use_cache=use_cache)
    return OpenAIJudge(spec, partial(_template, trait, metric), eval_type=eval_type, base_url=base_url,
                       use_cache=use_cache, number_tokens=number_tokens)


def add_judge_args(parser: argparse.ArgumentParser) -> None:
    """The judge flags every scoring CLI shares."""
    group = parser.add_argument_group("judge")
    group.add_argument("--judge_model", default=None,
                       help=f"judge: an OpenAI model name, 'likelihood', 'likelihood:<model>' or 'local:<model>' "
                            f"(default: {DEFAULT_OPENAI_JUDGE} when OPENAI_API_KEY is set, else likelihood)")
    group.add_argument("--judge_base_url", default=None,
                       help="OpenAI-compatible server for the judge, e.g. http://gpu-box:8000/v1 (vLLM)")
    group.add_argument("--max_concurrent_judges", type=int, default=8, help="judge requests in flight at once")
    group.add_argument("--no_judge_cache", action="store_true", help="ignore and do not fill the judge cache")
    group.add_argument("--judge_eval_type", default="0_100", choices=EVAL_TYPES,
                       help="judge answer format (LLM judges; the likelihood judge ignores it)")
    group.add_argument("--judge_number_tokens", default="auto", choices=NUMBER_TOKENS,
                       help="does the judge server's tokenizer keep numbers whole or split them into digits? "
                            "(auto: probe the server once; split: judge on the 0_10 scale)")
    group.add_argument("--judge_prefill", default="",
                       help="text the local judge's answer starts with, e.g. 'Score: ' (local:<model> only)")


def judges_from_args(args: argparse.Namespace, *, trait: Trait, eval_model: LoadedModel | None = None
                     ) -> dict[str, Judge]:
    """{trait judge column: judge, "coherence": judge} from parsed `add_judge_args` flags."""
    return {metric: make_judge(args.judge_model, trait=trait, metric=metric, base_url=args.judge_base_url,
                               eval_model=eval_model, use_cache=not args.no_judge_cache,
                               eval_type=args.judge_eval_type, number_tokens=args.judge_number_tokens,
                               prefill=args.judge_prefill)
            for metric in (trait.judge_column, COHERENCE)}
