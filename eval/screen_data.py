"""Screen finetuning data before training: projection difference along a persona vector.

    python -m eval.screen_data --file_path data/a.jsonl data/b.jsonl \\
        --vector_path output/persona_vectors/smollm2-135m/evil_response_avg_diff.pt --layer 20

Per sample: the data response's and the base model's own response's projection onto the
vector (response average, a·v/|v|) and their difference; per dataset the mean with a
t interval. Writes the per-sample CSV (--output_path, default screen_samples.csv in
--output_dir), with screen_summary.csv and screen_distributions.png beside it. Base responses
(--backend hf|vllm|auto) are cached per (model, prompt), so screening the same data along
another vector generates nothing; a rerun resumes.

The prediction check over dataset.zip (every trait x normal/misaligned_1/misaligned_2 along
the trait's own vector; the ordering, and the correlation with the measured effect of
finetuning on the datasets named by --finetune and/or given by --shifts):

    python -m eval.screen_data --validate --vector_dir output/persona_vectors/smollm2-135m --layer 20 \\
        [--max_samples 20] [--finetune evil:normal evil:misaligned_1 evil:misaligned_2 --finetune_steps 4]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from persona.cli import (
    add_backend_args,
    add_judge_args,
    add_model_args,
    judge_settings,
    require_positive,
    run_cli,
    setup_logging,
    split_list,
)
from persona.layout import Layout
from persona.preflight import check_output_paths
from viz.common import save_figure
from viz.plot_screening import distributions_figure, interval_columns, ordering_figure, scatter_figure


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file_path", nargs="+", default=None, help="chat JSONL file(s) to screen")
    parser.add_argument("--vector_path", default=None, help="persona vector .pt ([num_layers+1, hidden])")
    parser.add_argument("--layer", type=int, required=True, help="layer L = output of decoder block L")
    add_model_args(parser)
    add_backend_args(parser)
    parser.add_argument(
        "--max_tokens",
        type=int,
        default=None,
        help="cap of the base responses (default: the longest data response, in tokens)",
    )
    parser.add_argument("--temperature", type=float, default=0.0, help="base-response sampling (default 0: greedy)")
    parser.add_argument("--seed", type=int, default=0, help="row seeds when --temperature > 0")
    parser.add_argument("--batch_size", type=int, default=16, help="generation and forward-pass batch size")
    parser.add_argument(
        "--output_path",
        default=None,
        help="per-sample CSV of a screening; screen_summary.csv and the figure go beside it",
    )
    parser.add_argument(
        "--output_dir",
        default=None,
        help="output folder, of a screening (instead of --output_path) or of --validate "
        "(default: output/screen/<model>/...)",
    )
    parser.add_argument("--top_k", type=int, default=5, help="samples with the largest difference to print")
    parser.add_argument("--overwrite", action="store_true", help="recompute finished outputs made otherwise")
    check = parser.add_argument_group("prediction check (--validate)")
    check.add_argument("--validate", action="store_true", help="run the prediction check over --dataset_zip")
    check.add_argument("--dataset_zip", default="dataset.zip", help="archive of dataset/<trait>/<level>.jsonl")
    check.add_argument("--vector_dir", default=None, help="folder of <trait>_<kind>_diff.pt (default: the model's)")
    check.add_argument("--vector_kind", default="response_avg", help="vector file kind (default response_avg)")
    check.add_argument("--traits", nargs="+", default=None, help="traits to check (default: all in the archive)")
    check.add_argument("--max_samples", type=int, default=None, help="first N rows of each level (default: all)")
    check.add_argument(
        "--shifts",
        default=None,
        help="CSV of measured finetuning effects: trait, level, finetuning_shift [, trait_score]",
    )
    check.add_argument(
        "--finetune",
        nargs="*",
        default=None,
        metavar="TRAIT:LEVEL",
        help="datasets to finetune on and measure (trait:level, or trait for its three levels; "
        "the flag alone: the first checked trait's three levels)",
    )
    check.add_argument("--finetune_steps", type=int, default=4, help="LoRA steps per finetune (default 4)")
    check.add_argument(
        "--train_config",
        default="configs/train_demo.json",
        help="training config template of the finetunes (model, data, folder and steps are set per run)",
    )
    check.add_argument(
        "--eval_questions", type=int, default=5, help="eval questions answered by each finetuned model (default 5)"
    )
    check.add_argument("--figs_dir", default="figs", help="folder of the check's figures (default figs)")
    add_judge_args(parser)
    args = parser.parse_args(argv)
    require_positive(
        parser, args, "--batch_size", "--max_tokens", "--max_samples", "--top_k", "--finetune_steps", "--eval_questions"
    )
    if args.output_path and (args.output_dir or args.validate):
        parser.error(
            "--output_path names a screening's per-sample CSV: give --output_dir instead with "
            + ("--validate" if args.validate else "it, not both")
        )
    if args.output_path and Path(args.output_path).suffix != ".csv":
        parser.error(f"--output_path {args.output_path} must end in .csv (the per-sample table)")
    if args.validate:
        args.traits = split_list(args.traits) or None
        args.finetune = _finetune_runs(parser, args.finetune, args.traits)
    elif not (args.file_path and args.vector_path):
        parser.error("give --file_path and --vector_path (or --validate for the dataset.zip check)")
    return args


def _finetune_runs(
    parser: argparse.ArgumentParser, values: list[str] | None, traits: list[str] | None
) -> list[tuple[str, str]] | None:
    """--finetune as (trait, level) pairs; None: the flag alone (resolved once the traits are known)."""
    from persona.screening_check import LEVELS

    if values is None:
        return []
    if not split_list(values):
        return [(traits[0], lv) for lv in LEVELS] if traits else None
    runs = []
    for value in split_list(values):
        trait, _, level = value.partition(":")
        if level and level not in LEVELS:
            parser.error(f"--finetune {value}: the level must be one of {', '.join(LEVELS)}")
        runs += [(trait, lv) for lv in ([level] if level else LEVELS)]
    return list(dict.fromkeys(runs))


def _screen_kwargs(args: argparse.Namespace) -> dict:
    return {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "overwrite": args.overwrite,
        "device": args.device,
        "dtype": args.dtype,
        "backend": args.backend,
        "gpu_memory_utilization": args.gpu_memory_utilization,
    }


def _output_dir(args: argparse.Namespace, leaf: str) -> Path:
    """--output_dir, or output/screen/<model>/<leaf>."""
    if args.output_dir:
        return Path(args.output_dir)
    layout = Layout(args.model)
    return Path(layout.root) / "screen" / layout.name / leaf


def _print_summary(summary: pd.DataFrame) -> None:
    cols = ["dataset", "n", "projection_difference", "ci_low", "ci_high", "proj_data", "proj_base"]
    print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def screen(args: argparse.Namespace) -> int:
    from persona.screening import SAMPLES_FILE, SUMMARY_FILE, run_screening

    if args.output_path:
        out, samples_name = Path(args.output_path).parent, Path(args.output_path).name
    else:
        out, samples_name = _output_dir(args, f"{Path(args.vector_path).stem}_layer{args.layer}"), SAMPLES_FILE
    result = run_screening(
        out,
        args.file_path,
        args.vector_path,
        args.layer,
        model_name=args.model,
        samples_name=samples_name,
        **_screen_kwargs(args),
    )
    for note in result.skipped:
        print(f"skipped {note}")
    if result.reused:
        print(f"{out} is finished with these settings: read back (pass --overwrite to recompute)")
    else:
        print(f"base responses: {result.generated} generated, {result.cache_hits} from the cache")
    _print_summary(result.summary)
    top = result.samples.nlargest(args.top_k, "projection_difference")
    print(f"\ntop {len(top)} samples by projection difference:")
    for _, row in top.iterrows():
        print(
            f"  {row['dataset']}:{row['line']}  {row['projection_difference']:+.3f}  {str(row['data_response'])[:90]!r}"
        )
    save_figure(distributions_figure(result.samples), out / "screen_distributions.png")
    print(f"wrote {out / samples_name} and {out / SUMMARY_FILE}")
    return 0


def validate(args: argparse.Namespace) -> int:
    from persona.evaluation import EvalSpec
    from persona.io import write_csv
    from persona.screening_check import LEVELS, archive_traits, run_check
    from persona.screening_finetune import FinetuneSettings

    out = _output_dir(args, f"check_layer{args.layer}")
    runs = args.finetune
    if runs is None:  # the flag alone, no --traits: the archive's first trait
        runs = [(archive_traits(args.dataset_zip)[0], level) for level in LEVELS]
    settings = None
    if runs:
        spec = EvalSpec(
            model=args.model,
            trait=runs[0][0],
            max_questions=args.eval_questions,
            max_tokens=args.max_tokens or 48,
            temperature=args.temperature,
            seeds=(args.seed,),
            batch_size=args.batch_size,
            backend=args.backend,
            gpu_memory_utilization=args.gpu_memory_utilization,
            device=args.device,
            dtype=args.dtype,
            judge=judge_settings(args),
        )
        settings = FinetuneSettings(spec, steps=args.finetune_steps, template=Path(args.train_config))
    result = run_check(
        out,
        args.dataset_zip,
        args.vector_dir or Layout(args.model).vectors_dir,
        args.layer,
        model_name=args.model,
        traits=args.traits,
        vector_kind=args.vector_kind,
        max_rows=args.max_samples,
        shifts_path=args.shifts,
        finetune=runs,
        finetune_settings=settings,
        **_screen_kwargs(args),
    )
    write_csv(out / "check_summary.csv", result.summary)
    write_csv(out / "check_ordering.csv", result.ordering)
    paired = [f"misaligned_2_minus_normal{end}" for end in ("", "_ci_low", "_ci_high")]
    cols = ["trait", *LEVELS, "normal_lt_misaligned_2", "ordered", *paired, "misaligned_2_above_normal"]
    print(result.ordering[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    n = len(result.ordering)
    print(
        f"ordered normal < misaligned_1 < misaligned_2: {int(result.ordering['ordered'].sum())} of {n} traits; "
        f"normal < misaligned_2: {int(result.ordering['normal_lt_misaligned_2'].sum())} of {n}; "
        "misaligned_2 above normal by the paired 95% interval: "
        f"{int(result.ordering['misaligned_2_above_normal'].sum())} of {n}"
    )
    figs = Path(args.figs_dir)
    save_figure(ordering_figure(result.summary, list(LEVELS)), figs / "projection_difference_by_level.png")
    if result.merged is not None:
        write_csv(out / "check_shifts.csv", result.merged)
        for c in result.correlations:
            print(
                f"Pearson r(projection_difference, {c.y}) = {c.r:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}], "
                f"p = {c.p_value:.2g}, n = {c.n}"
            )
        first = result.correlations[0]
        labels = [f"{t}/{lv}" for t, lv in zip(result.merged["trait"], result.merged["level"])]
        fig = scatter_figure(
            result.merged["projection_difference"].tolist(),
            result.merged[first.y].tolist(),
            labels,
            xlabel="projection difference (before finetuning)",
            ylabel=f"measured {first.y.replace('_', ' ')}",
            title="projection difference predicts the finetuning shift?",
            yerr=interval_columns(result.merged, first.y),
        )
        save_figure(fig, figs / "projection_difference_vs_shift.png")
    print(f"wrote {out / 'check_summary.csv'} and {out / 'check_ordering.csv'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    check_output_paths(files=[args.output_path], folders=[args.output_dir])  # before any model loads
    setup_logging()
    return validate(args) if args.validate else screen(args)


if __name__ == "__main__":
    run_cli(main)
