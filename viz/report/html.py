"""HTML building blocks of the report: escaped text, tables that fit, folds, figures, numbers.

Every piece of text that comes from a file goes through `esc`, so an answer holding
`<script>` renders as text. Tables sit in their own scrolling box and take short headers
with the full column name in a `title` tooltip, so the page itself never scrolls sideways.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping, Sequence

import pandas as pd

MAX_TABLE_ROWS = 200
FOLD_CHARS = 400  # answers longer than this fold behind their start
PREVIEW_CHARS = 200
_NUMERIC_TEXT = re.compile(r"[-+]?\d[\d.]*(?: \[[-+]?[\d.]+, [-+]?[\d.]+\])?")  # `45.2`, `45.2 [38.1, 52.0]`

STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: 1.5em 2em; color: #222;
       max-width: 1200px; line-height: 1.45; overflow-wrap: anywhere; }
h1 { font-size: 1.6em; margin: 0 0 .3em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.8em; }
h3 { margin: 1.2em 0 .4em; } .muted { color: #666; font-size: .85em; }
.scroll { overflow-x: auto; max-width: 100%; margin: .4em 0 1em; }
table { border-collapse: collapse; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; vertical-align: top; }
th { background: #f0f0f0; } th[title] { text-decoration: underline dotted; cursor: help; }
td.text, th.text { text-align: left; overflow-wrap: anywhere; }
.finding { border-left: 4px solid #2a6; background: #f4faf6; padding: .5em 1em; margin: .6em 0; }
.finding.none { border-color: #c80; background: #fdf8f0; }
.flag { color: #a40; font-weight: 600; font-size: .85em; }
figure { display: inline-block; margin: 0 1em 1.2em 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #444; max-width: 560px; }
.pair { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: .8em; margin: .3em 0 1em; }
.pair.single { grid-template-columns: minmax(0, 1fr); }
.answer { border: 1px solid #ddd; border-radius: 4px; padding: .4em .6em; background: #fff; min-width: 0; }
.answer.quoted { border: 2px solid #2a6; background: #f4faf6; }
.answer .scores { font-size: .8em; color: #555; }
.answer .text { white-space: pre-wrap; font-size: .9em; }
.question { font-weight: 600; margin-top: .8em; }
details { margin: .3em 0; } summary { cursor: pointer; }
pre { background: #f7f7f7; padding: .5em; white-space: pre-wrap; font-size: .8em; }
blockquote { margin: .4em 0 .2em 1em; color: #333; font-style: italic; white-space: pre-wrap; }
"""


def esc(value: object) -> str:
    return html.escape(str(value))


def number(value: object) -> str:
    """A number without an interval, to 3 significant digits ('' for a missing value)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return ""
    digits = 1 if value == 0 else min(4, max(0, 2 - math.floor(math.log10(abs(value)))))
    return f"{value:.{digits}f}"


def table(
    df: pd.DataFrame, headers: Mapping[str, str] | None = None, legend: str = "", max_rows: int = MAX_TABLE_ROWS
) -> str:
    """An escaped table in its own scroll box; `headers` maps a column to a short header (full name as tooltip)."""
    headers = headers or {}
    shown = df.head(max_rows)
    text = {c for c in shown.columns if not pd.api.types.is_numeric_dtype(shown[c])}
    head = []
    for c in shown.columns:
        short = headers.get(str(c), str(c))
        tip = f' title="{esc(c)}"' if short != str(c) else ""
        head.append(f'<th class="{"text" if c in text else ""}"{tip}>{esc(short)}</th>')
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for c, v in zip(shown.columns, row, strict=True):
            if isinstance(v, str) and _NUMERIC_TEXT.fullmatch(v):
                cells.append(f"<td>{esc(v)}</td>")
            elif c in text or isinstance(v, str):
                cells.append(f'<td class="text">{"" if v is None or v is pd.NA else esc(v)}</td>')
            else:
                cells.append(f"<td>{number(v.item() if hasattr(v, 'item') else v)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = f'<p class="muted">{len(df) - max_rows} more rows not shown.</p>' if len(df) > max_rows else ""
    note = f'<p class="muted">{legend}</p>' if legend else ""
    return (
        f'<div class="scroll"><table><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{note}{more}"
    )


def details(summary: str, body: str, css: str = "") -> str:
    """A fold, closed by default (`summary` is HTML)."""
    cls = f' class="{css}"' if css else ""
    return f"<details{cls}><summary>{summary}</summary>{body}</details>"


def folded_text(text: object) -> str:
    """Answer text, escaped; a long one shows its start and folds the rest."""
    s = "" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text)
    if len(s) <= FOLD_CHARS:
        return f'<div class="text">{esc(s)}</div>'
    return details(
        f'<span class="text">{esc(s[:PREVIEW_CHARS])}</span>… '
        f'<span class="muted">({len(s) - PREVIEW_CHARS} more characters)</span>',
        f'<div class="text">{esc(s)}</div>',
    )


def figure(name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{esc(name)}">'
        f'<figcaption>{caption} <span class="muted">File: {esc(name)}</span></figcaption></figure>'
    )


def bullet_list(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""
