"""Turn trait definitions into artifacts with any OpenAI-compatible chat endpoint.

    python -m data_generation.generate_trait --traits humble humble_2 \\
        --model gpt-4.1-mini-2025-04-14 [--base-url http://localhost:8000/v1]

For a base trait the model writes 5 instruction pairs, 40 questions and a judge prompt;
the questions are split 20/20 into `trait_data_extract/` and `trait_data_eval/`. A
variant (`humble_2`) gets its own 5 pairs and reuses its base trait's questions and
judge prompt, so bases are generated first. The work is done by
`persona.trait_generation`; this script parses flags, prints the summary and exits 0 (all
made or skipped), 1 (some trait failed) or 2 (bad setup: unknown trait, missing key).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from data_generation.prompts import ARTIFACT_PROMPT, SYSTEM_PROMPT, VARIANT_PROMPT, with_question_instruction
from persona import traits
from persona.cli import finite_float, require_positive, run_cli, setup_logging, split_list
from persona.preflight import check_output_paths
from persona.trait_generation import DEFAULT_MODEL, TraitPrompts, format_summary, generate_traits

PROMPTS = TraitPrompts(system=SYSTEM_PROMPT, artifact=ARTIFACT_PROMPT, variant=VARIANT_PROMPT)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    data = traits.DEFAULT_DATA_DIR
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--trait-definitions",
        type=Path,
        default=data / traits.DEFINITIONS_FILE,
        help="JSON object: trait name -> definition (default: %(default)s)",
    )
    p.add_argument(
        "--extract-dir",
        type=Path,
        default=data / "trait_data_extract",
        help="where extract artifacts go (default: %(default)s)",
    )
    p.add_argument(
        "--eval-dir", type=Path, default=data / "trait_data_eval", help="where eval artifacts go (default: %(default)s)"
    )
    p.add_argument(
        "--traits", nargs="+", default=None, help="names to generate (default: every trait in the definitions file)"
    )
    p.add_argument("--overwrite", action="store_true", help="regenerate traits whose files exist")
    p.add_argument("--model", default=DEFAULT_MODEL, help="chat model (default: %(default)s)")
    p.add_argument(
        "--base-url",
        default=None,
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (default: $OPENAI_BASE_URL, else OpenAI)",
    )
    p.add_argument(
        "--max-concurrency",
        "--max-concurrent",
        dest="max_concurrency",
        type=int,
        default=8,
        help="requests in flight at once (default: %(default)s; --max-concurrent is the original's spelling)",
    )
    p.add_argument(
        "--question-instruction",
        default="",
        help="additional instruction for the question generation, as the original's (e.g. a domain or a style)",
    )
    p.add_argument(
        "--max-retries", type=int, default=4, help="attempts per trait before giving up (default: %(default)s)"
    )
    p.add_argument(
        "--retry-base-delay",
        type=finite_float,
        default=2.0,
        help="seconds before the first retry; doubles each time (default: %(default)s)",
    )
    p.add_argument("--timeout", type=finite_float, default=180.0, help="seconds per request (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    require_positive(p, args, "--max-concurrency", "--max-retries")
    if args.retry_base_delay < 0 or args.timeout <= 0:
        p.error(f"--retry-base-delay must be >= 0 and --timeout > 0, got {args.retry_base_delay} and {args.timeout}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Exit code: 0 all made or skipped, 1 some trait failed, 2 setup error (one line on stderr)."""
    args = parse_args(argv)
    check_output_paths(folders=[args.extract_dir, args.eval_dir])  # before any request is made
    setup_logging(args.verbose)
    outcomes = generate_traits(
        args.trait_definitions,
        split_list(args.traits),
        prompts=with_question_instruction(PROMPTS, args.question_instruction),
        extract_dir=args.extract_dir,
        eval_dir=args.eval_dir,
        model=args.model,
        base_url=args.base_url,
        timeout=args.timeout,
        overwrite=args.overwrite,
        max_retries=args.max_retries,
        retry_base_delay=args.retry_base_delay,
        max_concurrency=args.max_concurrency,
    )
    print(format_summary(outcomes))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    run_cli(main)
