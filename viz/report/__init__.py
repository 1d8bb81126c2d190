"""One self-contained HTML report of a results folder: findings first, answers beside scores, provenance last.

    python -m viz.report output/demo [--out report.html]

RESULTS_DIR may be a whole demo folder, one steering sweep folder or one experiment folder;
the page has the same order with what is there:
1. a one-paragraph summary of the run (model, judge, traits, what ran, when) and, per trait,
   the headline: baseline -> best cell with mean coherence >= 80, or "no steering effect";
2. every figure (PNG, embedded) with a caption saying what it shows and which files it came from;
3. per-experiment sections (steering sweep, projections, finetuning shift, linearity,
   interference, vector geometry) with their tables of means, then any other table;
4. the answers: per trait, the baseline's and the best cell's answers to the same questions
   side by side with their scores, every other cell on a click;
5. provenance: settings, judge sidecars, training configs, vector metadata, all folded.
The page has no scripts and no external links, so it opens anywhere, offline, and can be
mailed. Default output: RESULTS_DIR/report.html.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from persona.cli import setup_logging
from persona.io import write_text
from viz.report.collect import PROVENANCE, Report, collect
from viz.report.page import render

__all__ = ["Report", "collect", "main", "render", "write_report"]


def write_report(results_dir: Path, out: Path | None = None) -> tuple[Path, Report]:
    """Collect `results_dir` and write its page (default `results_dir/report.html`); the path and what it holds."""
    report = collect(results_dir)
    if report.empty:
        patterns = ", ".join(p for group in PROVENANCE.values() for p in group)
        raise FileNotFoundError(f"{results_dir}: no files matching *.csv, *.png or {patterns}")
    out = out or results_dir / "report.html"
    write_text(out, render(report))
    return out, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR", help="folder of a run's results")
    parser.add_argument("--out", type=Path, default=None, help="HTML file (default: RESULTS_DIR/report.html)")
    args = parser.parse_args(argv)
    setup_logging()
    out, report = write_report(args.results_dir, args.out)
    print(
        f"wrote {out}: {len(report.sweeps)} steering sweeps, {len(report.evaluations)} evaluated files, "
        f"{len(report.tables)} tables, {len(report.figures)} figures, {len(report.settings)} provenance files"
    )
    return 0
