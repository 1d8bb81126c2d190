"""Write trait-eliciting finetuning data: normal.jsonl, misaligned_1.jsonl (mild), misaligned_2.jsonl (strong).

    python data_generation/generate_finetune_dataset.py --trait evil --output-dir dataset/evil \
        --n-questions-per-domain 5 --backend local            # offline, embedded model
    python data_generation/generate_finetune_dataset.py --trait evil --backend openai --model gpt-4.1-mini

Each file holds the same questions over everyday domains (data_generation/domains.py) as
chat rows `{"messages": [user, assistant]}`; metadata.json records how they were made.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from data_generation import finetune_prompts
from data_generation.domains import DOMAINS
from persona import llm
from persona.cli import add_model_args, finite_float, require_positive, run_cli, setup_logging, split_list
from persona.preflight import check_output_path
from persona.training import finetune_data as fd
from persona.traits import load_trait

DEFAULT_MODELS = {"openai": "gpt-4.1-mini", "local": "smollm2-135m"}
REQUEST_TIMEOUT_S = 120.0  # one reply holds three full answers


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--trait", required=True, help="trait name from the library (e.g. evil) or a path to a .json artifact"
    )
    p.add_argument("--output-dir", default=None, help="where to write the files (default: dataset/<trait>)")
    p.add_argument(
        "--n-questions-per-domain",
        "--n",
        dest="n_questions_per_domain",
        type=int,
        default=5,
        help="questions per domain (default 5; --n is the original's spelling, its default was 100)",
    )
    p.add_argument(
        "--backend",
        choices=("openai", "local"),
        default="openai",
        help="openai: an LLM writes questions and answers; local: a local model answers offline",
    )
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server (default: $OPENAI_BASE_URL or OpenAI)")
    p.add_argument(
        "--domains",
        nargs="*",
        default=None,
        help=f"subset of domains (default: all of {', '.join(d.name for d in DOMAINS)})",
    )
    p.add_argument(
        "--n-trait-questions",
        type=int,
        default=None,
        help="also use this many of the trait's extract questions (local; default: all)",
    )
    p.add_argument("--trait-data-dir", default=None, help="trait library root (default: data_generation/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--retries", type=int, default=3, help="retries per invalid LLM reply or failed request / empty local answer"
    )
    p.add_argument(
        "--concurrency",
        "--max-concurrent-questions",
        "--max-concurrent-responses",
        dest="concurrency",
        type=int,
        default=8,
        help="parallel requests (openai; the original's two --max-concurrent-* flags set this one limit)",
    )
    p.add_argument("--max-new-tokens", type=int, default=200, help="answer length cap (local)")
    p.add_argument("--temperature", type=finite_float, default=0.8, help="sampling temperature (local)")
    p.add_argument("--top-p", type=finite_float, default=0.95, help="nucleus sampling (local)")
    p.add_argument("--batch-size", type=int, default=16, help="generation batch size (local)")
    p.add_argument("-v", "--verbose", action="store_true")
    add_model_args(p)
    p.set_defaults(model=None)
    args = p.parse_args(argv)
    require_positive(
        p, args, "--n-questions-per-domain", "--n-trait-questions", "--concurrency", "--max-new-tokens", "--batch-size"
    )
    if args.retries < 0:
        p.error(f"--retries must be >= 0, got {args.retries}")
    return args


def pick_domains(names: list[str] | None) -> list[fd.Domain]:
    if not names:
        return list(DOMAINS)
    by_name = {d.name: d for d in DOMAINS}
    unknown = [n for n in split_list(names) if n not in by_name]
    if unknown:
        raise ValueError(f"--domains: unknown domain(s) {unknown}; choose from {sorted(by_name)}")
    return [by_name[n] for n in split_list(names)]


def local_backend(args: argparse.Namespace, trait, domains) -> list[fd.Example]:
    from persona.generation import generate_answers
    from persona.models import load_model

    lm = load_model(args.model, device=args.device, dtype=args.dtype)

    def generate(conversations, attempt):
        return generate_answers(
            lm,
            conversations,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            seed=args.seed + 1000 * attempt,
            batch_size=args.batch_size,
        )

    examples = fd.local_questions(trait, domains, args.n_questions_per_domain, args.seed, args.n_trait_questions)
    return fd.local_examples(generate, trait, examples, finetune_prompts.MILD_SYSTEM_PROMPT, retries=args.retries)


def openai_backend(args: argparse.Namespace, trait, domains) -> list[fd.Example]:
    client = llm.make_async_client(args.base_url, timeout=REQUEST_TIMEOUT_S, purpose="the openai backend")
    prompts = fd.Prompts(
        finetune_prompts.QUESTIONS_PROMPT, finetune_prompts.ANSWERS_PROMPT, finetune_prompts.MILD_SYSTEM_PROMPT
    )
    definition = fd.trait_description(trait, args.trait_data_dir)

    async def run() -> list[fd.Example]:
        async with client:
            return await fd.openai_examples(
                client,
                args.model,
                trait,
                definition,
                domains,
                args.n_questions_per_domain,
                prompts,
                retries=args.retries,
                concurrency=args.concurrency,
            )

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    args.model = args.model or DEFAULT_MODELS[args.backend]
    trait = load_trait(args.trait, "extract", args.trait_data_dir)
    domains = pick_domains(args.domains)
    out_dir = Path(args.output_dir or Path("dataset") / trait.name)
    check_output_path(out_dir, folder=True)  # before any answer is generated
    backend = local_backend if args.backend == "local" else openai_backend
    try:
        examples = backend(args, trait, domains)
    except fd.GenerationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    metadata = {
        "trait": trait.name,
        "backend": args.backend,
        "model": args.model,
        "seed": args.seed,
        "n_questions_per_domain": args.n_questions_per_domain,
        "domains": [d.name for d in domains],
    }
    if args.backend == "local":
        metadata.update(
            n_trait_questions=args.n_trait_questions,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
        )
    paths = fd.write_dataset(out_dir, examples, metadata)
    print(f"{len(examples)} questions x {len(paths)} levels for trait {trait.name} ({args.backend}, {args.model}):")
    for level, path in paths.items():
        print(f"  {level}: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
