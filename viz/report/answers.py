"""The answers behind the scores: per trait, baseline and best cell side by side, any other cell on a click.

The study's rule is that a score counts only when the answers behind it read as the trait,
so every answer shows its own trait and coherence scores next to the baseline's answer to
the same question; cells below the coherence floor are marked, and the answer the headline
quotes is highlighted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from persona.demo import COHERENCE_FLOOR
from persona.io import read_table
from viz.report.findings import Finding
from viz.report.html import details, esc, folded_text, number


def _key(df: pd.DataFrame) -> str:
    return "question_id" if "question_id" in df.columns else "question"


def _answer(row: pd.Series, column: str, quoted: bool) -> str:
    scores = " · ".join(
        f"{esc(c)} {float(v):.1f}" for c in (column, "coherence") if c in row and pd.notna(v := pd.to_numeric(row[c], errors="coerce"))
    )
    mark = ' <span class="flag">quoted in the headline</span>' if quoted else ""
    return (
        f'<div class="answer{" quoted" if quoted else ""}"><div class="scores">{scores or "unscored"}{mark}</div>'
        f"{folded_text(row.get('answer'))}</div>"
    )


def side_by_side(
    left: pd.DataFrame,
    right: pd.DataFrame | None,
    labels: tuple[str, str],
    column: str,
    quoted_row: int | None = None,
) -> str:
    """Answers of two cells to the same questions, in two columns; the right cell's `quoted_row` highlighted."""
    key = _key(left)
    order = list(dict.fromkeys(left[key].tolist() + ([] if right is None else right[key].tolist())))
    parts = [f'<div class="pair"><div class="muted">{esc(labels[0])}</div><div class="muted">{esc(labels[1])}</div></div>']
    for q in order:
        mine = left[left[key] == q]
        theirs = right[right[key] == q] if right is not None else right
        question = (mine if len(mine) else theirs)["question"].iloc[0] if "question" in left.columns else q
        lcol = "".join(_answer(r, column, False) for _, r in mine.iterrows()) or '<p class="muted">no answer</p>'
        rcol = (
            '<p class="muted">no coherent steered cell</p>'
            if right is None
            else "".join(_answer(r, column, i == quoted_row) for i, r in theirs.iterrows())
            or '<p class="muted">no answer</p>'
        )
        parts.append(f'<div class="question">{esc(question)}</div><div class="pair"><div>{lcol}</div><div>{rcol}</div></div>')
    return "".join(parts)


def _cell_label(row: pd.Series, column: str, floor: float) -> str:
    flag = "" if row["coherence"] >= floor else f' <span class="flag">below coherence {floor:g}: not a result</span>'
    return f"{esc(row['cell'])}: {esc(column)} {number(row['trait'])}, coherence {number(row['coherence'])}{flag}"


def trait_answers(f: Finding, floor: float = COHERENCE_FLOOR) -> str:
    """One trait: baseline beside the best cell, then every other cell (beside the baseline) in a fold."""
    s = f.sweep
    table = s.table
    base = read_table(s.baseline) if s.baseline else None
    best_path = Path(f.best["path"]) if f.best is not None else None
    quoted_row = f.quoted[1] if f.quoted else None
    first = base if base is not None else (read_table(best_path) if best_path else None)
    head = f'<h3 id="{f.anchor}">{esc(s.trait)}{"" if s.folder == "." else f" ({esc(s.folder)})"}</h3>'
    parts = [head]
    if first is not None:
        best = read_table(best_path) if best_path and base is not None else None
        right = f"best coherent cell: layer {int(f.best['layer'])}, coef {f.best['coef']:g}" if f.best is not None else "best coherent cell: none"
        parts.append(side_by_side(first, best, ("baseline (unsteered)" if base is not None else right, right), s.column, quoted_row))
    others = table[table["layer"].notna() & (table["path"] != (str(best_path) if best_path else ""))]
    for _, row in others.sort_values(["layer", "coef"]).iterrows():
        cell = read_table(row["path"])
        body = side_by_side(base, cell, ("baseline (unsteered)", str(row["cell"])), s.column) if base is not None else side_by_side(cell, None, (str(row["cell"]), ""), s.column)
        parts.append(details(_cell_label(row, s.column, floor), body))
    return "".join(parts)


def answers_section(findings: Sequence[Finding]) -> str:
    if not findings:
        return ""
    intro = (
        '<p class="muted">Each answer with its own trait and coherence score (0-100). Other cells open on a click; '
        f"cells whose mean coherence is below {COHERENCE_FLOOR:g} are marked and never count as results.</p>"
    )
    return f'<section id="answers"><h2>Answers</h2>{intro}{"".join(trait_answers(f) for f in findings)}</section>'
