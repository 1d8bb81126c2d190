"""The small commands that live with the library: `python -m persona.traits` and `python -m persona.layout`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the heavy modules load when used, so light CLIs (layout, traits) start fast
    pass


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
