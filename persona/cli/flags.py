"""The flag groups every command shares (model, backend, judge, seeds, Ray, extraction method) and what they build."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona.cli.values import finite_float, split_list
from persona.defaults import EMBEDDED_MODEL

if TYPE_CHECKING:  # the heavy modules load when used, so light CLIs (layout, traits) start fast
    from persona.evaluation import EvalSpec
    from persona.judge.factory import JudgeSettings
    from persona.judge.runner import Judge
    from persona.models import LoadedModel
    from persona.traits import Trait


def add_ray_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """`--ray [ADDRESS]`: run `what` on a Ray cluster (None: locally; "": $RAY_ADDRESS or an in-process cluster)."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help=f"run {what} on a Ray cluster, one worker per GPU (per CPU without GPUs): the cluster at ADDRESS, "
        "or without one $RAY_ADDRESS, else a cluster started in this process. Same files as a local run "
        "(see README, 'Several GPUs and nodes')",
    )


def add_model_args(parser: argparse.ArgumentParser, flag: str = "--model") -> None:
    """The model flag (default: the embedded model) plus device/dtype overrides."""
    parser.add_argument(
        flag,
        default=EMBEDDED_MODEL,
        help="Hub id, local dir, LoRA checkpoint or training output dir (default: the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: bf16 on CUDA, fp32 on CPU)")


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    """`--backend` and vLLM's memory fraction, for every command that generates."""
    from persona.vllm_backend import BACKENDS

    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="generation backend: vllm (needs vLLM; steering runs inside it), hf (transformers), "
        "auto (default: vllm when installed for the model's device, else hf)",
    )
    parser.add_argument(
        "--gpu_memory_utilization",
        type=finite_float,
        default=None,
        help="vLLM's memory fraction (default: 0.25 on CPU, 0.6 on CUDA)",
    )


def add_vector_folder_args(parser: argparse.ArgumentParser, default: Path | None, default_text: str) -> None:
    """`--vector_dir` and `--vector_type`: the folder of `{trait}_{vector_type}.pt` files that
    `persona.analysis.results.vector_files` reads (`default_text` says what a `None` default means)."""
    parser.add_argument(
        "--vector_dir",
        type=Path,
        default=default,
        help=f"folder of {{trait}}_{{vector_type}}.pt files (default: {default_text})",
    )
    parser.add_argument(
        "--vector_type", default="response_avg_diff", help="file suffix of the vectors (default: response_avg_diff)"
    )


def add_method_args(parser: argparse.ArgumentParser) -> None:
    """The extraction-method flags; `method_options` turns them into `(method, options)`."""
    group = parser.add_argument_group("extraction method")
    group.add_argument(
        "--method",
        default="mean_diff",
        help="mean_diff (default: the original study's mean difference), pca_diff, probe, or a method "
        "registered with persona.extraction_methods.register_method (see --method_module)",
    )
    group.add_argument("--pca_center", action="store_true", help="pca_diff: centre the differences (repeng's variant)")
    group.add_argument(
        "--method_option",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="options of the method (e.g. folds=3 for probe); values are read as JSON, else as text",
    )
    group.add_argument(
        "--method_module", default=None, help="a module to import first that registers more methods (my_pkg.methods)"
    )


def method_options(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """`(method, options)` from the method flags, checked against the method's signature."""
    import importlib
    import json

    from persona.extraction_methods import get_method

    if args.method_module:
        importlib.import_module(args.method_module)
    options: dict[str, Any] = {}
    for item in split_list(args.method_option):
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--method_option {item!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    if args.pca_center:
        if args.method != "pca_diff":
            raise ValueError(f"--pca_center applies to --method pca_diff, not {args.method}")
        options["center"] = True
    get_method(args.method).options(options)  # unknown method or option: one clear line now
    return args.method, options


def _coherence_prompt_file(path: str) -> str:
    """`--coherence_prompt`'s type: the template is read and checked as the flags are parsed, before any work."""
    from persona.judge.factory import load_coherence_prompt

    try:
        load_coherence_prompt(path)
    except (OSError, ValueError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return path


def add_judge_args(parser: argparse.ArgumentParser) -> None:
    """The judge flags every scoring CLI shares; `judge_settings` turns them into `JudgeSettings`."""
    from persona.judge.aggregate import EVAL_TYPES
    from persona.judge.factory import DEFAULT_OPENAI_JUDGE
    from persona.judge.openai_judge import NUMBER_TOKENS

    group = parser.add_argument_group("judge")
    group.add_argument(
        "--judge_model",
        default=None,
        help=f"judge: an OpenAI model name, 'likelihood', 'likelihood:<model>' or 'local:<model>' "
        f"(default: {DEFAULT_OPENAI_JUDGE} when OPENAI_API_KEY is set, else likelihood)",
    )
    group.add_argument(
        "--judge_base_url",
        default=None,
        help="OpenAI-compatible server for the judge, e.g. http://gpu-box:8000/v1 (vLLM)",
    )
    group.add_argument(
        "--max_concurrent_judges",
        type=int,
        default=100,
        help="judge requests in flight at once (default 100, as the original)",
    )
    group.add_argument("--no_judge_cache", action="store_true", help="ignore and do not fill the judge cache")
    group.add_argument(
        "--judge_eval_type",
        default="0_100",
        choices=EVAL_TYPES,
        help="judge answer format (LLM judges; the likelihood judge ignores it)",
    )
    group.add_argument(
        "--judge_number_tokens",
        default="auto",
        choices=NUMBER_TOKENS,
        help="does the judge server's tokenizer keep numbers whole or split them into digits? "
        "(auto: probe the server once; split: judge on the 0_10 scale)",
    )
    group.add_argument(
        "--judge_prefill",
        default="",
        help="text the local judge's answer starts with, e.g. 'Score: ' (local:<model> only)",
    )
    group.add_argument(
        "--coherence_prompt",
        type=_coherence_prompt_file,
        default=None,
        metavar="FILE",
        help="coherence judge template with {question} and {answer} (e.g. the original study's); "
        "default: the built-in one. The trait's template is its file's eval_prompt. "
        "The likelihood proxy uses no prompt",
    )


def add_scoring_args(parser: argparse.ArgumentParser, trait_help: str) -> None:
    """The flags of a command that scores a trait's answers: `--trait`, the model (which the likelihood
    proxy judges with) and the judge flags; `judges_from_args` builds the judges."""
    parser.add_argument("--trait", required=True, help=trait_help)
    add_model_args(parser)
    add_judge_args(parser)


def judge_settings(args: argparse.Namespace) -> JudgeSettings:
    """The `add_judge_args` flags of parsed `args` (the fields are named after the flags)."""
    from persona.judge.factory import JudgeSettings

    return JudgeSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(JudgeSettings)})


def judges_from_args(
    args: argparse.Namespace, *, trait: Trait, eval_model: LoadedModel | None = None
) -> dict[str, Judge]:
    """{trait judge column: judge, "coherence": judge} from the judge flags."""
    from persona.judge.factory import make_judges

    return make_judges(judge_settings(args), trait=trait, eval_model=eval_model)


def add_seed_args(parser: argparse.ArgumentParser) -> None:
    """`--seed` (one sampling seed) and `--seeds` (several: one CSV with a `seed` column)."""
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (per-row, batch-independent)")
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="run every cell under each of these sampling seeds into one CSV with a seed column "
        "(replaces --seed; the summary treats seed as nested inside question)",
    )


def seeds_from_args(args: argparse.Namespace) -> tuple[int, ...]:
    return tuple(dict.fromkeys(args.seeds)) if args.seeds else (args.seed,)


def eval_spec_from_args(args: argparse.Namespace, **overrides: Any) -> EvalSpec:
    """The `EvalSpec` of parsed eval_persona-style flags (`overrides` replace any field); judge resolved."""
    from persona.evaluation import EvalSpec

    values = {
        "model": args.model,
        "trait": args.trait,
        "version": args.version,
        "n_per_question": args.n_per_question,
        "max_questions": args.max_questions,
        "instruction_type": args.persona_instruction_type,
        "assistant_name": args.assistant_name,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": getattr(args, "top_p", 1.0),  # eval.grid has no sampling flags beyond temperature
        "top_k": getattr(args, "top_k", 0),
        "min_new_tokens": getattr(args, "min_new_tokens", 1),
        "seeds": seeds_from_args(args) if hasattr(args, "seeds") else (args.seed,),
        "batch_size": args.batch_size,
        "backend": args.backend,
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "device": args.device,
        "dtype": args.dtype,
        "judge": judge_settings(args),
    }
    values.update(overrides)
    return EvalSpec(**values).resolve_judge()
