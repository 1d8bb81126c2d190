"""The commands that live with the library: `python -m persona.traits` and `persona.layout`, and the
flags of `python -m persona.app` (whose `__main__` serves the explorer with them)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from persona.cli.flags import add_backend_args, add_judge_args, add_model_args


def traits_main(argv: Sequence[str] | None = None) -> int:
    """`python -m persona.traits --check DATA_DIR`: validate a trait library (exit 1 on problems)."""
    from persona.traits import check_library, format_table

    parser = argparse.ArgumentParser(
        prog="python -m persona.traits", description="Validate a trait library or show one artifact."
    )
    parser.add_argument(
        "--check",
        metavar="DATA_DIR",
        type=Path,
        help="validate every artifact and definition under DATA_DIR (e.g. data_generation)",
    )
    args = parser.parse_args(argv)
    if args.check is None:
        parser.error("nothing to do: pass --check DATA_DIR")
    if not args.check.is_dir():
        raise FileNotFoundError(f"{args.check} is not a directory: pass the folder holding trait_data_extract/")
    reports, general = check_library(args.check)
    print(format_table(reports))
    problems = general + [p for r in reports for p in r.problems]
    bases = sum(r.name == r.judge_column for r in reports)
    print(f"\n{len(reports)} artifacts ({bases} base traits, {len(reports) - bases} variants) in {args.check}")
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print("all artifacts valid")
    return 0


def layout_main(argv: Sequence[str] | None = None) -> int:
    """`python -m persona.layout MODEL`: the output folders of a model as shell assignments, for the pipelines."""
    from persona.layout import OUTPUT_ROOT, Layout, num_layers, shell_assignments

    parser = argparse.ArgumentParser(
        prog="python -m persona.layout",
        description="Print the output folders of a model as shell assignments "
        "(MODEL_NAME, EXTRACT_DIR, VECTOR_DIR, EVAL_DIR; PROJECTION_DIR "
        "with --trait).",
    )
    parser.add_argument("model", help="model spec: Hub id, local folder, checkpoint or smollm2-135m")
    parser.add_argument("--root", default=OUTPUT_ROOT, help="output root (default: output)")
    parser.add_argument("--trait", default=None, help="finetuned trait whose checkpoint evaluations to locate")
    parser.add_argument(
        "--num_layers", action="store_true", help="print the model's decoder layer count instead (read from its config)"
    )
    args = parser.parse_args(argv)
    try:
        layout = Layout(args.model, args.root)
        print(num_layers(args.model) if args.num_layers else shell_assignments(layout, args.trait))
    except (OSError, ValueError) as err:
        raise ValueError(f"{args.model}: {err}") from err
    return 0


APP_DESCRIPTION = """Explore persona vectors in the browser: steer, watch the trait token by token, browse results.

    python -m persona.app                                   # embedded model, output/demo/vectors
    python -m persona.app --model Qwen/Qwen2.5-7B-Instruct --vector_dir output/persona_vectors/Qwen2.5-7B-Instruct

Serves on http://127.0.0.1:7860 only, fully offline. --host 0.0.0.0 serves every machine that
can reach this one, with no password: anyone there can run the model.
"""


def app_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags of `python -m persona.app`."""
    parser = argparse.ArgumentParser(
        prog="python -m persona.app", description=APP_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_args(parser, "--model")
    parser.add_argument(
        "--vector_dir", default="output/demo/vectors", help="folder of persona vectors (.pt) to steer with"
    )
    parser.add_argument(
        "--results_dir", default="output/demo", help="output folder (a demo, a sweep, an experiment) to browse"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default: this machine only). WARNING: 0.0.0.0 lets anyone on your "
        "network use the explorer and the model, without a password",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--batch_size", type=int, default=16, help="generation batch size (the strip packs 5 rows)")
    add_backend_args(parser)
    add_judge_args(parser)
    return parser.parse_args(argv)
