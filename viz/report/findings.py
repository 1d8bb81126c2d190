"""The top of the report: what was run (one paragraph) and, per trait, the headline finding.

A steered cell counts as a finding only when its mean coherence is at least the floor
(`persona.analysis.headline.COHERENCE_FLOOR`); when no cell qualifies, or the best one does not beat the
baseline, the headline says "no steering effect" rather than showing the loudest cell.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from persona.analysis.headline import COHERENCE_FLOOR, headline_rows, typical_row
from persona.analysis.stats import Interval, QuestionMismatch
from persona.io import read_table
from persona.judge.factory import is_proxy
from viz.report.collect import Report, Sweep
from viz.report.html import esc
from viz.report.intervals import row_interval, score_text

QUOTE_CHARS = 240
HELD_OUT_COLUMNS = ("selection_questions", "report_questions")  # headline.csv of a held-out selection
SELECTION_FOLDER = "selection"  # the demo's cells on the selection questions (study.demo.paths)


@dataclass(frozen=True)
class Finding:
    """One trait's headline: a `headline.csv`-shaped row, the best cell's table row and the answer it quotes."""

    sweep: Sweep
    row: pd.Series  # headline_rows / held_out_rows columns: baseline_trait(_ci_*), best_layer, delta(_ci_*), ...
    best: pd.Series | None  # the best cell's row of the sweep table; None: no coherent cell
    quoted: tuple[Path, int] | None  # (cell file, row) of the quoted answer

    @property
    def anchor(self) -> str:
        return f"answers-{self.sweep.folder}-{self.sweep.trait}".replace("/", "-").replace(".", "_")

    @property
    def held_out(self) -> bool:
        return all(isinstance(self.row.get(c), str) for c in HELD_OUT_COLUMNS)

    @property
    def chosen(self) -> str:
        """What the best cell is: chosen elsewhere (held out, its coherence here may fall short) or here."""
        return "cell chosen on the selection questions" if self.held_out else "best coherent cell"

    def interval(self, prefix: str) -> Interval:
        return row_interval(self.row, prefix)


def recorded_headlines(report: Report) -> dict[str, pd.Series]:
    """Rows of a held-out `headline.csv` by trait (a same-questions one is recomputed from the files)."""
    table = report.tables.get("headline.csv")
    if table is None or not set(HELD_OUT_COLUMNS) <= set(table.columns) or "trait" not in table.columns:
        return {}
    return {str(r["trait"]): r for _, r in table.iterrows()}


def finding(sweep: Sweep, recorded: pd.Series | None = None, floor: float = COHERENCE_FLOOR) -> Finding:
    """The trait's headline: the recorded held-out one when given, else the best coherent cell of its sweep."""
    table = sweep.table
    if recorded is not None:
        row = recorded
    else:
        try:
            row = headline_rows({sweep.trait: table}, floor, columns={sweep.trait: sweep.column}).iloc[0]
        except QuestionMismatch:  # the cells asked other questions than the baseline: no paired delta
            row = headline_rows({sweep.trait: table}, floor).iloc[0]
    steered = table[table["layer"].notna()]
    match = steered[(steered["layer"] == row.get("best_layer")) & (steered["coef"] == row.get("best_coef"))]
    if match.empty:
        return Finding(sweep, row, None, None)
    best = match.iloc[0]
    quoted = (Path(best["path"]), typical_row(read_table(best["path"]), sweep.column))
    return Finding(sweep, row, best, quoted)


def judges(report: Report) -> list[str]:
    """The judges the sidecars name, each said as what it is (LLM judge or offline proxy)."""
    specs = sorted(
        {str(r.get("judge")) for r in report.records.get("judge sidecars", {}).values() if isinstance(r, dict)}
    )
    return [
        f"the offline likelihood proxy <code>{esc(s)}</code> (not an LLM judge)"
        if is_proxy(s)
        else f"the LLM judge <code>{esc(s)}</code>"
        for s in specs
    ]


def _model(report: Report) -> str | None:
    settings = report.project_settings()
    if settings.get("model"):
        return str(settings["model"])
    for group in ("vector metadata", "training configs and results"):
        for rec in report.records.get(group, {}).values():
            if isinstance(rec, dict) and rec.get("model"):
                return str(rec["model"])
    return None


def _values(values: Sequence[object]) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _sweep_description(s: Sweep) -> str:
    cells = s.table[s.table["layer"].notna()]
    parts = ["an unsteered baseline"] if s.baseline else []
    if len(cells):
        parts.append(
            f"a steering sweep ({s.steering_type} positions) over layers "
            f"{_values(sorted(set(cells['layer'].astype(int))))} x coefs {_values(sorted(set(cells['coef'])))}"
        )
    return f"{' and '.join(parts)} ({int(s.table['n'].max())} answers per cell)"


EXPERIMENT_MARKERS = (  # a file or column name part -> what it shows was run
    ("_proj_layer", "projections of the answers onto the persona vectors"),
    ("finetuning_shift", "LoRA finetuning with and without preventative steering, and its shift along the vector"),
    ("interference", "an interference experiment (each vector alone, every trait judged)"),
    ("linearity", "a linearity experiment (two vectors together vs the sum of each alone)"),
    ("cross_persona", "a cross-persona correlation"),
)


def experiments_run(report: Report) -> list[str]:
    """What the folder shows was run, in the words a methods paragraph would use."""
    by_description: dict[str, dict[str, dict[str, None]]] = {}  # description -> traits, folders (ordered sets)
    for s in report.sweeps:
        seen = by_description.setdefault(_sweep_description(s), {"traits": {}, "folders": {}})
        seen["traits"][s.trait] = seen["folders"][s.folder] = None
    done = [
        f"for {' and '.join(seen['traits'])}, {what}"
        + (f" in each of {', '.join(f + '/' for f in seen['folders'])}" if len(seen["folders"]) > 1 else "")
        for what, seen in by_description.items()
    ]
    names = [*report.tables, *report.evaluations, *(c for df in report.evaluations.values() for c in df.columns)]
    done += [text for key, text in EXPERIMENT_MARKERS if any(key in n for n in names)]
    if next(report.root.rglob("*_diff.pt"), None):
        done.append("persona vector extraction (pos - neg mean activations)")
    return done


def _when(report: Report) -> str:
    if report.written is None:
        return ""
    first, last = (datetime.datetime.fromtimestamp(t, datetime.UTC) for t in report.written)
    minutes = (last - first).total_seconds() / 60
    span = f"{minutes:.0f} min" if minutes >= 1 else "under a minute"
    return (
        f" Its files were written between {first:%Y-%m-%d %H:%M} and {last:%H:%M} UTC "
        f"({span} from the first to the last; a rerun that skipped finished stages shows less)."
    )


def summary(report: Report) -> str:
    """The run in one paragraph: model, judge, traits, what ran, when and for how long."""
    model = _model(report)
    traits = report.traits()
    judged = judges(report)
    parts = [
        f"Model <code>{esc(model)}</code>." if model else "Model not recorded.",
        f"Scored by {' and '.join(judged)}."
        if judged
        else "Judge not recorded (no <code>.judge.json</code> sidecars).",
    ]
    if traits:
        parts.append(f"Traits: {esc(', '.join(traits))}.")
    run = experiments_run(report)
    if run:
        parts.append("Ran " + "; ".join(esc(r) for r in run) + ".")
    text = " ".join(parts) + _when(report)
    if judged and all("proxy" in j for j in judged):
        text += (
            " The proxy scores how much likelier an answer is under the trait's positive prompts than under its"
            " negative ones; read the answers before believing a number."
        )
    return f'<p id="run-summary">{text}</p>'


def _questions(f: Finding) -> str:
    if f.held_out:
        chosen, measured = (str(f.row[c]).split() for c in HELD_OUT_COLUMNS)
        same_ids = "; ids are numbered within each set" if set(chosen) == set(measured) else ""
        return (
            f" Chosen on {len(chosen)} selection questions ({esc(', '.join(chosen))}), measured on "
            f"{len(measured)} other questions ({esc(', '.join(measured))}{same_ids})."
        )
    n = f.interval("baseline_trait").n_questions
    return (
        f" Chosen and measured on the same {n} questions, so the gain is optimistic (the best of "
        f"{int(f.row['cells'])} cells)."
        if n
        else ""
    )


def verdict(f: Finding, floor: float = COHERENCE_FLOOR) -> tuple[bool, str]:
    """(is it an effect, the plain words): an effect needs a coherent best cell whose delta interval lies above 0."""
    delta, coherence = f.interval("delta"), f.interval("best_coherence")
    if f.best is None:
        return (
            False,
            f"no steering effect: none of the {int(f.row['cells'])} steered cells kept mean coherence &ge; {floor:g}",
        )
    if not f.interval("baseline_trait").defined:
        return False, "no unsteered baseline to compare with"
    if coherence.mean < floor:
        return False, f"no steering effect: the chosen cell's coherence fell below {floor:g} on the measured questions"
    if "effect" in f.row and pd.notna(f.row["effect"]):
        effect = bool(f.row["effect"])
    else:
        effect = (
            bool(delta.ci_low > 0)
            if delta.defined
            else f.interval("best_trait").mean > f.interval("baseline_trait").mean
        )
    if effect:
        return True, "steering effect" + (": the 95% interval of the gain lies above 0" if delta.defined else "")
    if delta.defined and delta.mean > 0:
        return False, "no demonstrated steering effect: the 95% interval of the gain includes 0"
    return False, "no steering effect: the best coherent cell does not score above the baseline"


def headline(f: Finding, floor: float = COHERENCE_FLOOR) -> str:
    """One trait's finding, said plainly, with a link to the answers behind it."""
    s = f.sweep
    where = f' <span class="muted">({esc(s.folder)})</span>' if s.folder != "." else ""
    title = f"<strong>{esc(s.trait)}</strong>{where}: "
    base, base_coherence = f.interval("baseline_trait"), f.interval("baseline_coherence")
    base_text = (
        f"baseline {esc(s.column)} {score_text(base)}, coherence {score_text(base_coherence)}"
        if base.defined
        else "no unsteered baseline"
    )
    if s.table["layer"].notna().sum() == 0:
        return f'<div class="finding none">{title}{base_text}; no steered cells in this folder.</div>'
    effect, words = verdict(f, floor)
    css = "finding" if effect else "finding none"
    cells, below = int(f.row["cells"]), int(f.row["cells_below_floor"])
    below_text = f" {below} of {cells} steered cells fell below coherence {floor:g} (not results)."
    if f.best is None:
        return f'<div class="{css}">{title}<strong>{words}</strong> ({base_text}).</div>'
    cell = f"layer {int(f.best['layer'])}, coef {f.best['coef']:g}"
    delta = f.interval("delta")
    gain = f"; gain {score_text(delta, signed=True)}" if delta.defined else ""
    text = (
        f"{title}<strong>{words}</strong>. {base_text} &rarr; {f.chosen} ({cell}) {esc(s.column)} "
        f"{score_text(f.interval('best_trait'))}, coherence {score_text(f.interval('best_coherence'))}{gain}."
        f"{below_text}{_questions(f)}"
    )
    return f'<div class="{css}">{text}{_quote(f)}</div>'


def _quote(f: Finding) -> str:
    if f.quoted is None:
        return ""
    path, row = f.quoted
    answer = str(read_table(path)["answer"].iloc[row])
    short = answer if len(answer) <= QUOTE_CHARS else answer[:QUOTE_CHARS] + "…"
    return (
        f'<blockquote>{esc(short)}</blockquote><span class="muted">A typical answer of that cell (its median '
        f'{esc(f.sweep.column)} score, not its best); <a href="#{f.anchor}">all its answers beside the baseline\'s</a>.'
        "</span>"
    )


def findings_of(report: Report) -> list[Finding]:
    """One finding per reported sweep; a trait's held-out `headline.csv` row is used when only one sweep has it.

    The demo's `selection/` sweeps only choose the best cell (on other questions): they are shown
    among the experiments, never as findings.
    """
    recorded = recorded_headlines(report)
    reported = [s for s in report.sweeps if Path(s.folder).name != SELECTION_FOLDER]
    counts = pd.Series([s.trait for s in reported]).value_counts()
    return [finding(s, recorded.get(s.trait) if counts[s.trait] == 1 else None) for s in reported]


def findings_section(report: Report, findings: Sequence[Finding]) -> str:
    """The first section: run summary, then one headline per trait."""
    body = [summary(report)]
    if findings:
        body.append('<h2 id="headline">Headline findings</h2>')
        body += [headline(f) for f in findings]
    else:
        body.append('<p id="headline">No steering results in this folder; its other results follow.</p>')
    return f'<section id="findings">{"".join(body)}</section>'
