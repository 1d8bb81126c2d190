"""One self-contained HTML page for a results folder: settings, mean scores per cell, tables, every figure.

    python -m viz.report output/multi_persona/smollm2-135m/linearity_evil_optimistic_layer20 [--out report.html]

Looks through RESULTS_DIR recursively for:
- settings: `settings.json`, `training_config.json`, `training_results.json`, `*_vectors.json`, `*.judge.json`;
- evaluation CSVs (a `question` and an `answer` column): one row per file (cell) with the number of
  answers and the mean of every score column (the judged traits, coherence, projections);
- other CSVs (e.g. linearity.csv, interference_matrix.csv, cross_persona_corr.csv): shown as tables;
- PNG figures: embedded as data URIs.
The page has no scripts and no external links, so it opens anywhere, offline. Default output:
RESULTS_DIR/report.html.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from persona.cli import run_cli, setup_logging
from persona.io import read_table, write_text

SETTINGS_PATTERNS = ("settings.json", "training_config.json", "training_results.json", "*_vectors.json", "*.judge.json")
TEXT_COLUMNS = ("question", "prompt", "answer", "question_id")
MAX_TABLE_ROWS = 200
STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f0f0f0; } td.text, th.text { text-align: left; }
figure { display: inline-block; margin: 0 1em 1.5em 0; vertical-align: top; }
img { max-width: 100%; border: 1px solid #ddd; } figcaption { font-size: .8em; color: #555; }
pre { background: #f7f7f7; padding: .5em; overflow-x: auto; font-size: .8em; }
"""


@dataclass
class Report:
    """What a results folder holds, read and summarised."""

    root: Path
    settings: dict[str, dict] = field(default_factory=dict)
    scores: dict[str, pd.DataFrame] = field(default_factory=dict)  # folder -> one row per evaluation CSV
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # file -> its table
    figures: dict[str, bytes] = field(default_factory=dict)  # file -> PNG bytes

    @property
    def empty(self) -> bool:
        return not (self.settings or self.scores or self.tables or self.figures)


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


def cell_scores(df: pd.DataFrame) -> dict[str, float]:
    """Mean of every numeric column of an evaluation CSV other than its text columns."""
    means = {}
    for column in df.columns:
        if column in TEXT_COLUMNS:
            continue
        values = pd.to_numeric(df[column], errors="coerce")
        if values.notna().any():
            means[column] = float(values.mean())
    return means


def collect(root: str | Path) -> Report:
    """Read every settings file, CSV and PNG under `root` (sorted, so the page is reproducible)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: folder does not exist (expected result CSVs, PNGs and settings JSON)")
    report = Report(root)
    for pattern in SETTINGS_PATTERNS:
        for path in sorted(root.rglob(pattern)):
            try:
                report.settings[_relative(path, root)] = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: not valid JSON ({err})") from None
    rows: dict[str, list[dict]] = {}
    for path in sorted(root.rglob("*.csv")):
        if path.name.endswith(".answers.csv"):
            continue  # answers still waiting for their judge
        df = read_table(path)
        if {"question", "answer"} <= set(df.columns):
            folder = _relative(path.parent, root) if path.parent != root else "."
            rows.setdefault(folder, []).append({"cell": path.stem, "n": len(df), **cell_scores(df)})
        else:
            report.tables[_relative(path, root)] = df
    report.scores = {folder: pd.DataFrame(r) for folder, r in rows.items()}
    report.figures = {_relative(p, root): p.read_bytes() for p in sorted(root.rglob("*.png"))}
    return report


def _table(df: pd.DataFrame) -> str:
    """An HTML table: numbers right-aligned with 3 decimals, text left-aligned and escaped."""
    shown = df.head(MAX_TABLE_ROWS)
    text = {c for c in shown.columns if not pd.api.types.is_numeric_dtype(shown[c])}
    head = "".join(f'<th class="{"text" if c in text else ""}">{html.escape(str(c))}</th>' for c in shown.columns)
    body = []
    for _, row in shown.iterrows():
        cells = []
        for c in shown.columns:
            v = row[c]
            if c in text or isinstance(v, str):
                cells.append(f'<td class="text">{html.escape(str(v))}</td>')
            else:
                cells.append(f"<td>{'' if pd.isna(v) else f'{v:.3f}' if isinstance(v, float) else v}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = f"<p>{len(df) - MAX_TABLE_ROWS} more rows not shown.</p>" if len(df) > MAX_TABLE_ROWS else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _settings_table(settings: dict) -> str:
    rows = (
        "".join(
            f'<tr><th class="text">{html.escape(str(k))}</th><td class="text">'
            f"{html.escape(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))}</td></tr>"
            for k, v in settings.items()
        )
        if isinstance(settings, dict)
        else ""
    )
    return f"<table>{rows}</table>" if rows else f"<pre>{html.escape(json.dumps(settings, indent=2))}</pre>"


def render(report: Report) -> str:
    """The page: settings, mean scores per cell, other tables, figures (PNG data URIs)."""
    title = html.escape(f"Results: {report.root}")
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>',
        f"<style>{STYLE}</style></head><body><h1>{title}</h1>",
        f"<p>Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by "
        "<code>python -m viz.report</code>. "
        "Scores are the judge's 0-100 means; the <code>.judge.json</code> settings say which judge scored them "
        "(the offline likelihood proxy is not the paper's LLM judge).</p>",
    ]
    if report.settings:
        parts.append("<h2>Settings</h2>")
        for name, settings in report.settings.items():
            parts.append(f"<h3>{html.escape(name)}</h3>{_settings_table(settings)}")
    if report.scores:
        parts.append("<h2>Mean scores per cell</h2>")
        for folder, table in report.scores.items():
            parts.append(f"<h3>{html.escape(folder)}</h3>{_table(table)}")
    if report.tables:
        parts.append("<h2>Result tables</h2>")
        for name, table in report.tables.items():
            parts.append(f"<h3>{html.escape(name)}</h3>{_table(table)}")
    if report.figures:
        parts.append("<h2>Figures</h2>")
        for name, png in report.figures.items():
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'
                f"<figcaption>{html.escape(name)}</figcaption></figure>"
            )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR", help="folder of a run's results")
    parser.add_argument("--out", type=Path, default=None, help="HTML file (default: RESULTS_DIR/report.html)")
    args = parser.parse_args(argv)
    setup_logging()
    report = collect(args.results_dir)
    if report.empty:
        raise FileNotFoundError(f"{args.results_dir}: no files matching *.csv, *.png or {', '.join(SETTINGS_PATTERNS)}")
    out = args.out or args.results_dir / "report.html"
    write_text(out, render(report))
    print(
        f"wrote {out}: {len(report.settings)} settings files, {sum(len(t) for t in report.scores.values())} "
        f"cells, {len(report.tables)} tables, {len(report.figures)} figures"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
