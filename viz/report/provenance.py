"""The end of the report: every settings record, judge sidecar, training config and vector metadata file.

They are what makes a number reproducible, but nobody reads them first: each category is
one closed `<details>`, each file inside it another, and the sidecars also get a one-line
table (judge, method, trait, date) so forty near-identical files read as one list.
"""

from __future__ import annotations

import json

import pandas as pd

from viz.report.collect import PROVENANCE, Report
from viz.report.html import details, esc, table

SIDECAR_FIELDS = ("judge", "method", "trait", "eval_type", "date")


def record_html(record: object) -> str:
    if isinstance(record, dict):
        rows = "".join(
            f'<tr><th class="text">{esc(k)}</th><td class="text">'
            f"{esc(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))}</td></tr>"
            for k, v in record.items()
        )
        if rows:
            return f'<div class="scroll"><table>{rows}</table></div>'
    return f"<pre>{esc(json.dumps(record, indent=2, ensure_ascii=False))}</pre>"


def _sidecar_table(records: dict[str, object]) -> str:
    rows = [
        {"file": name, **{k: r.get(k) for k in SIDECAR_FIELDS}} for name, r in records.items() if isinstance(r, dict)
    ]
    return table(pd.DataFrame(rows)) if rows else ""


def provenance_section(report: Report) -> str:
    if not report.records:
        return ""
    blocks = []
    for category in PROVENANCE:
        records = report.records.get(category, {})
        if not records:
            continue
        inner = _sidecar_table(records) if category == "judge sidecars" else ""
        inner += "".join(details(f"<code>{esc(name)}</code>", record_html(rec)) for name, rec in records.items())
        blocks.append(details(f"{esc(category)} ({len(records)} files)", inner, css="provenance"))
    intro = '<p class="muted">What every number was made with; each block opens on a click.</p>'
    return f'<section id="provenance"><h2>Provenance</h2>{intro}{"".join(blocks)}</section>'
