"""Summarize evaluation results: every cell's mean scores with question-clustered intervals, and deltas to the baseline.

    python -m eval.summarize PATH [--baseline CSV] [--by cell] [--ci 0.95] [--output_path summary.csv]

PATH is one eval CSV, a steering sweep folder ({trait}_baseline.csv and
{trait}_steer_{type}_layer_{L}_coef_{c}.csv cells; each trait against its own baseline) or an
eval.multi_persona experiment folder (cells/*.csv; against its `baseline` cell, or the
unsteered a_0.0_b_0.0 cell of a linearity grid). --baseline compares every cell with that CSV
instead. One row per (cell, metric): cell, metric, n_questions, n_answers, mean, ci_low,
ci_high, and with a baseline delta, delta_ci_low, delta_ci_high (paired by question). Metrics:
the trait judge columns, coherence and projection columns. --by seed gives one row per seed
of a run with a seed column. A cell whose questions differ from its baseline's is refused,
naming the question ids. How the intervals are computed: docs/statistics.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from persona.analysis.stats import METHODS
from persona.analysis.summary import BY, summarize, summary_lines
from persona.cli import run_cli, setup_logging
from persona.io import write_csv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="an eval CSV, a sweep folder or an experiment folder")
    parser.add_argument("--baseline", type=Path, default=None, help="eval CSV every cell is compared with")
    parser.add_argument("--by", choices=BY, default="cell", help="one row per cell (default) or per cell and seed")
    parser.add_argument("--ci", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="t",
        help="interval: cluster-robust t (default), cluster-robust normal, or question bootstrap",
    )
    parser.add_argument("--output_path", type=Path, default=None, help="also write the table to this CSV")
    args = parser.parse_args(argv)
    setup_logging()
    if not 0 < args.ci < 1:
        parser.error(f"--ci {args.ci}: give a level between 0 and 1, e.g. 0.95")
    table = summarize(args.path, args.baseline, ci=args.ci, by=args.by, method=args.method)
    print("\n".join(summary_lines(table, args.ci)))
    if args.output_path:
        write_csv(args.output_path, table)
        print(f"wrote {args.output_path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
