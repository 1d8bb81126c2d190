"""The top of the report: what was run (one paragraph) and, per trait, the headline finding.

A steered cell counts as a finding only when its mean coherence is at least the floor
(`persona.demo.COHERENCE_FLOOR`); when no cell qualifies, or the best one does not beat the
baseline, the headline says "no steering effect" rather than showing the loudest cell.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from persona.demo import COHERENCE_FLOOR, best_cell, typical_row
from persona.io import read_table
from persona.judge.factory import is_proxy
from viz.report.collect import Report, Sweep
from viz.report.html import esc, number
from viz.report.intervals import Estimate, estimate

QUOTE_CHARS = 240


@dataclass(frozen=True)
class Finding:
    """One trait's headline: baseline, best coherent cell (None: no win) and the answer it quotes."""

    sweep: Sweep
    baseline: Estimate | None
    best: pd.Series | None
    best_score: Estimate | None
    best_coherence: Estimate | None
    quoted: tuple[Path, int] | None  # (cell file, row) of the quoted answer

    @property
    def anchor(self) -> str:
        return f"answers-{self.sweep.folder}-{self.sweep.trait}".replace("/", "-").replace(".", "_")


def finding(sweep: Sweep, floor: float = COHERENCE_FLOOR) -> Finding:
    table = sweep.table
    baseline = estimate(read_table(sweep.baseline), sweep.column) if sweep.baseline else None
    best = best_cell(table, floor)
    if best is None:
        return Finding(sweep, baseline, None, None, None, None)
    cell = read_table(best["path"])
    quoted = (Path(best["path"]), typical_row(cell, sweep.column))
    return Finding(sweep, baseline, best, estimate(cell, sweep.column), estimate(cell, "coherence"), quoted)


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
    by_description: dict[str, list[str]] = {}
    for s in report.sweeps:
        by_description.setdefault(_sweep_description(s), []).append(s.trait)
    done = [f"for {' and '.join(traits)}, {what}" for what, traits in by_description.items()]
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


def _estimate_text(e: Estimate | None) -> str:
    return "n/a" if e is None else f"{e.text()} (n={e.n})"


def headline(f: Finding, floor: float = COHERENCE_FLOOR) -> str:
    """One trait's finding, said plainly, with a link to the answers behind it."""
    s, table = f.sweep, f.sweep.table
    steered = table[table["layer"].notna()]
    below = int((steered["coherence"] < floor).sum())
    where = f' <span class="muted">({esc(s.folder)})</span>' if s.folder != "." else ""
    title = f"<strong>{esc(s.trait)}</strong>{where}: "
    base = f"baseline {esc(s.column)} {_estimate_text(f.baseline)}" if f.baseline else "no unsteered baseline"
    if base and f.baseline is not None and s.baseline is not None:
        coherence = estimate(read_table(s.baseline), "coherence")
        base += f", coherence {coherence.text()}"
    if steered.empty:
        return f'<div class="finding none">{title}{base}; no steered cells in this folder.</div>'
    if f.best is None:
        return (
            f'<div class="finding none">{title}<strong>no steering effect</strong>: none of the {len(steered)} '
            f"steered cells kept mean coherence &ge; {floor:g} ({base}).</div>"
        )
    assert f.best_score is not None and f.best_coherence is not None
    cell = f"layer {int(f.best['layer'])}, coef {f.best['coef']:g}"
    gain = f.best_score.mean - f.baseline.mean if f.baseline else float("nan")
    verdict = (
        "<strong>no steering effect</strong>: the best coherent cell does not score above the baseline; "
        if f.baseline and gain <= 0
        else ""
    )
    text = (
        f"{title}{verdict}{base} &rarr; best coherent cell ({cell}) {esc(s.column)} {_estimate_text(f.best_score)}, "
        f"coherence {f.best_coherence.text()}"
        + (f"; {'+' if gain > 0 else ''}{number(gain, f.best_score.half_width)} vs baseline" if f.baseline else "")
        + f". {below} of {len(steered)} steered cells fell below coherence {floor:g} (not results)."
    )
    return f'<div class="finding{" none" if verdict else ""}">{text}{_quote(f)}</div>'


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


def findings_section(report: Report, findings: Sequence[Finding]) -> str:
    """The first section: run summary, then one headline per trait."""
    body = [summary(report)]
    if findings:
        body.append('<h2 id="headline">Headline findings</h2>')
        body += [headline(f) for f in findings]
    else:
        body.append('<p id="headline">No steering results in this folder; its other results follow.</p>')
    return f'<section id="findings">{"".join(body)}</section>'
