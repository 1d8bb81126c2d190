"""The answers behind the scores: per trait, baseline and best cell side by side, any other cell on a click.

The study's rule is that a score counts only when the answers behind it read as the trait,
so every answer shows its own trait and coherence scores next to the baseline's answer to
the same question; cells below the coherence floor are marked, and the answer the headline
quotes is highlighted.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from persona.analysis.headline import COHERENCE_FLOOR
from persona.io import read_table
from viz.report.findings import Finding
from viz.report.html import details, esc, folded_text, number


def _key(df: pd.DataFrame) -> str:
    return "question_id" if "question_id" in df.columns else "question"


def _answer(row: pd.Series, column: str, quoted: bool) -> str:
    scores = " · ".join(
        f"{esc(c)} {float(v):.1f}"
        for c in (column, "coherence")
        if c in row and pd.notna(v := pd.to_numeric(row[c], errors="coerce"))
    )
    mark = ' <span class="flag">quoted in the headline</span>' if quoted else ""
    return (
        f'<div class="answer{" quoted" if quoted else ""}"><div class="scores">{scores or "unscored"}{mark}</div>'
        f"{folded_text(row.get('answer'))}</div>"
    )


NO_ANSWER = '<p class="muted">no answer</p>'
Column = tuple[str, pd.DataFrame | None, int | None]  # (label, a cell's answers or None, its quoted row)


def side_by_side(columns: Sequence[Column], column: str) -> str:
    """Answers of one or two cells to the same questions, a column each; a column's quoted row is highlighted.

    A column without answers (None) keeps its label and says so in every row.
    """
    frames = [df for _, df, _ in columns if df is not None]
    key = _key(frames[0])
    order = list(dict.fromkeys(q for df in frames for q in df[key].tolist()))
    grid = "pair" if len(columns) == 2 else "pair single"
    parts = [f'<div class="{grid}">' + "".join(f'<div class="muted">{esc(c[0])}</div>' for c in columns) + "</div>"]
    for q in order:
        rows = [df[df[key] == q] for df in frames]
        question = next(r["question"].iloc[0] for r in rows if len(r)) if "question" in frames[0].columns else q
        cells = []
        for _, df, quoted_row in columns:
            if df is None:
                cells.append('<div class="muted">none</div>')
                continue
            mine = df[df[key] == q]
            answers = "".join(_answer(r, column, i == quoted_row) for i, r in mine.iterrows())
            cells.append(f"<div>{answers or NO_ANSWER}</div>")
        parts.append(f'<div class="question">{esc(question)}</div><div class="{grid}">{"".join(cells)}</div>')
    return "".join(parts)


def _cell_label(row: pd.Series, column: str, floor: float) -> str:
    flag = "" if row["coherence"] >= floor else f' <span class="flag">below coherence {floor:g}: not a result</span>'
    return f"{esc(row['cell'])}: {esc(column)} {number(row['trait'])}, coherence {number(row['coherence'])}{flag}"


def trait_answers(f: Finding, floor: float = COHERENCE_FLOOR) -> str:
    """One trait: baseline beside the best cell, then every other cell (beside the baseline) in a fold."""
    s = f.sweep
    base: list[Column] = [("baseline (unsteered)", read_table(s.baseline), None)] if s.baseline else []
    if f.best is not None:
        best: Column = (
            f"{f.chosen}: layer {int(f.best['layer'])}, coef {f.best['coef']:g}",
            read_table(f.best["path"]),
            f.quoted[1] if f.quoted else None,
        )
    else:
        best = (f"best coherent cell: none kept mean coherence >= {floor:g}", None, None)
    parts = [f'<h3 id="{f.anchor}">{esc(s.trait)}{"" if s.folder == "." else f" ({esc(s.folder)})"}</h3>']
    if base or best[1] is not None:
        parts.append(side_by_side([*base, best], s.column))
    best_path = str(f.best["path"]) if f.best is not None else None
    others = s.table[s.table["layer"].notna() & (s.table["path"] != best_path)]
    for _, row in others.sort_values(["layer", "coef"]).iterrows():
        cell: Column = (str(row["cell"]), read_table(row["path"]), None)
        parts.append(details(_cell_label(row, s.column, floor), side_by_side([*base, cell], s.column)))
    return "".join(parts)


def answers_section(findings: Sequence[Finding]) -> str:
    if not findings:
        return ""
    intro = (
        '<p class="muted">Each answer with its own trait and coherence score (0-100). Other cells open on a click; '
        f"cells whose mean coherence is below {COHERENCE_FLOOR:g} are marked and never count as results.</p>"
    )
    return f'<section id="answers"><h2>Answers</h2>{intro}{"".join(trait_answers(f) for f in findings)}</section>'
