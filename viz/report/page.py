"""The page in its reading order: findings, figures, experiments, answers, provenance."""

from __future__ import annotations

import datetime

from viz.report.answers import answers_section
from viz.report.collect import Report
from viz.report.experiments import experiments_section
from viz.report.figures import figures_section
from viz.report.findings import findings_of, findings_section
from viz.report.html import STYLE, esc
from viz.report.provenance import provenance_section


def title(report: Report) -> str:
    traits = report.traits()
    what = f"Persona study: {', '.join(traits)}" if traits else "Results"
    return f"{what} ({report.root.name or report.root})"


def render(report: Report) -> str:
    """The whole page as one HTML string (figures as data URIs, no scripts)."""
    findings = findings_of(report)
    heading = esc(title(report))
    made = (
        f'<p class="muted">{esc(report.root)} · built {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC '
        "by <code>python -m viz.report</code></p>"
    )
    sections = [
        findings_section(report, findings),
        figures_section(report),
        experiments_section(report),
        answers_section(findings),
        provenance_section(report),
    ]
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{heading}</title>'
        f"<style>{STYLE}</style></head><body><header><h1>{heading}</h1>{made}</header>\n"
        + "\n".join(s for s in sections if s)
        + "\n</body></html>\n"
    )
