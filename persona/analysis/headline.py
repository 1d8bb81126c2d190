"""The result tables of a steering study: every cell with its intervals, the best coherent cell, the headline.

The headline is the part that must not flatter: a steered cell counts as a result only when
its mean coherence is at least `COHERENCE_FLOOR` (a 135M model pushed hard writes loops that
a trait judge may still score high), every mean carries its question-clustered interval, and
`held_out_headlines` chooses the best cell on one set of questions and measures it on another
(`persona.analysis.selection`). `headline_rows` is the same-questions view: its best cell is
chosen and measured on the same questions, so its delta is optimistic (winner's curse).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from persona.analysis.selection import (
    COHERENCE_FLOOR,
    SCORE_COLUMNS,
    CellKey,
    Headline,
    cell_label,
    layer_coef,
    select_best,
)
from persona.analysis.stats import NAN_INTERVAL, Interval, mean_interval, paired_delta, score_interval
from persona.io import read_table

CELL_COLUMNS = ["cell", "layer", "coef", *SCORE_COLUMNS, "n", "n_questions", "path"]


def _cell_key(path: Path) -> tuple[str, int | None, float | None]:
    """(label, layer, coef) of a planned file: a sweep cell (`selection.layer_coef`) or the baseline."""
    layer, coef = layer_coef(path.name)
    if layer is not None:
        return cell_label(path.name), layer, coef
    if path.name.endswith("_baseline.csv"):
        return "baseline", None, None
    raise ValueError(f"{path}: not a baseline or sweep cell file")


def cell_table(files: Sequence[Path], column: str, *, ci: float = 0.95) -> pd.DataFrame:
    """One row per evaluated cell of a trait: its baseline (layer/coef empty) and each sweep cell.

    `files` are the planned result files (`{trait}_baseline.csv`, sweep cells), so results of
    other settings lying in the same folder never enter the table. Columns: cell, layer, coef,
    trait and coherence (means over answers, each with its question-clustered `_ci_low`,
    `_ci_high`), n (answers), n_questions, path, coherent (mean coherence >= COHERENCE_FLOOR).
    """
    rows = []
    for path in map(Path, files):
        cell, layer, coef = _cell_key(path)
        df = read_table(path)
        trait = score_interval(df, column, ci=ci)
        rows.append(
            {
                "cell": cell,
                "layer": layer,
                "coef": coef,
                **trait.columns("trait"),
                **score_interval(df, "coherence", ci=ci).columns("coherence"),
                "n": len(df),
                "n_questions": trait.n_questions,
                "path": str(path),
            }
        )
    table = pd.DataFrame(rows, columns=CELL_COLUMNS)
    table["coherent"] = table["coherence"] >= COHERENCE_FLOOR
    return table


def best_cell(table: pd.DataFrame, floor: float = COHERENCE_FLOOR) -> pd.Series | None:
    """The steered cell with the highest mean trait score among those with mean coherence >= floor.

    Ties go to the smaller |coef|, then the lower layer (the gentler intervention). None when
    no steered cell is coherent enough: then there is no win to report.
    """
    steered = table[table["layer"].notna() & (table["coherence"] >= floor)]
    if steered.empty:
        return None
    ranked = steered.assign(_abs=steered["coef"].abs()).sort_values(
        ["trait", "_abs", "layer"], ascending=[False, True, True]
    )
    return ranked.drop(columns="_abs").iloc[0]


def typical_row(df: pd.DataFrame, column: str) -> int:
    """Index of the answer whose trait score is the cell's median: an example, not the best case."""
    scores = pd.to_numeric(df[column], errors="coerce")
    median = scores.median()
    return int((scores - median).abs().idxmin())


def _interval(row: pd.Series, metric: str) -> Interval:
    """A cell table row's interval of `trait` or `coherence` (tables from before intervals: mean only)."""
    return Interval(
        int(row.get("n_questions", 0) or 0),
        int(row.get("n", 0) or 0),
        float(row[metric]),
        float(row.get(f"{metric}_ci_low", float("nan"))),
        float(row.get(f"{metric}_ci_high", float("nan"))),
    )


def _best_delta(table: pd.DataFrame, best: pd.Series | None, column: str | None, ci: float) -> Interval:
    """The best cell minus the baseline, paired by question (needs the files and the score column)."""
    base = table[table["cell"] == "baseline"]
    if best is None or base.empty or column is None:
        return NAN_INTERVAL
    return paired_delta(read_table(best["path"]), read_table(base["path"].iloc[0]), column, ci=ci)


def headline_rows(
    tables: Mapping[str, pd.DataFrame],
    floor: float = COHERENCE_FLOOR,
    *,
    columns: Mapping[str, str] | None = None,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Per trait: the baseline and the best coherent cell (empty when none), and how many cells fell short.

    With `columns` (trait -> score column) it adds the paired delta of the best cell against
    the baseline. The best cell is chosen on the questions it is measured on: for a held-out
    headline use `held_out_headlines`.
    """
    rows = []
    for trait, table in tables.items():
        base = table[table["cell"] == "baseline"]
        best = best_cell(table, floor)
        steered = table[table["layer"].notna()]
        base_trait = _interval(base.iloc[0], "trait") if len(base) else NAN_INTERVAL
        base_coh = _interval(base.iloc[0], "coherence") if len(base) else NAN_INTERVAL
        best_trait = NAN_INTERVAL if best is None else _interval(best, "trait")
        best_coh = NAN_INTERVAL if best is None else _interval(best, "coherence")
        delta = _best_delta(table, best, None if columns is None else columns[trait], ci)
        rows.append(
            {
                "trait": trait,
                **base_trait.columns("baseline_trait"),
                **base_coh.columns("baseline_coherence"),
                "best_layer": None if best is None else int(best["layer"]),
                "best_coef": None if best is None else float(best["coef"]),
                **best_trait.columns("best_trait"),
                **best_coh.columns("best_coherence"),
                **delta.columns("delta"),
                "n_questions": base_trait.n_questions,
                "cells": len(steered),
                "cells_below_floor": int((steered["coherence"] < floor).sum()),
            }
        )
    return pd.DataFrame(rows)


def describe_trait(trait: str, table: pd.DataFrame, floor: float = COHERENCE_FLOOR) -> list[str]:
    """The summary lines of one trait: baseline, best coherent cell, every cell with its flag and intervals."""
    lines = []
    base = table[table["cell"] == "baseline"]
    if len(base):
        row = base.iloc[0]
        lines.append(
            f"  baseline (unsteered): {trait} {_interval(row, 'trait').text(1)}   "
            f"coherence {_interval(row, 'coherence').text(1)}   (n={row['n']})"
        )
    best = best_cell(table, floor)
    if best is None:
        lines.append(f"  best steered cell: none: no cell kept mean coherence >= {floor:g}, so no steering win")
    else:
        gain = best["trait"] - base["trait"].iloc[0] if len(base) else float("nan")
        lines.append(
            f"  best steered cell with coherence >= {floor:g}: layer {int(best['layer'])}, "
            f"coef {best['coef']:g}: {trait} {_interval(best, 'trait').text(1)} ({gain:+.1f} vs baseline, "
            f"chosen on these questions)   coherence {_interval(best, 'coherence').text(1)}"
        )
    for _, row in table[table["layer"].notna()].sort_values(["layer", "coef"]).iterrows():
        flag = "" if row["coherence"] >= floor else f"   below coherence {floor:g}: not a result"
        mark = " <- best" if best is not None and row["path"] == best["path"] else ""
        lines.append(
            f"    {row['cell']:>20}: {trait} {_interval(row, 'trait').text(1)}   "
            f"coherence {_interval(row, 'coherence').text(1)}{flag}{mark}"
        )
    return lines


def example_answers(table: pd.DataFrame, column: str, floor: float = COHERENCE_FLOOR) -> list[str]:
    """The best cell's typical answer and the baseline's answer to the same question, in full."""
    best = best_cell(table, floor)
    base = table[table["cell"] == "baseline"]
    if best is None or base.empty:
        return []
    steered = read_table(best["path"])
    i = typical_row(steered, column)
    baseline = read_table(base["path"].iloc[0])
    same = baseline[baseline["question_id"] == steered["question_id"].iloc[i]]
    j = same.index[0] if len(same) else 0
    return [
        f"  question: {steered['question'].iloc[i]}",
        f"  baseline answer ({column} {baseline[column].iloc[j]:.1f}, coherence "
        f"{baseline['coherence'].iloc[j]:.1f}):\n{_indent(baseline['answer'].iloc[j])}",
        f"  best cell answer, layer {int(best['layer'])} coef {best['coef']:g} ({column} "
        f"{steered[column].iloc[i]:.1f}, coherence {steered['coherence'].iloc[i]:.1f}):\n"
        f"{_indent(steered['answer'].iloc[i])}",
    ]


def _indent(text: object) -> str:
    return "\n".join("    | " + line for line in str(text).splitlines() or [""])


def summary_text(
    tables: Mapping[str, pd.DataFrame], columns: Mapping[str, str], judge: str, floor: float = COHERENCE_FLOOR
) -> str:
    """The printed headline: per trait the baseline, the best coherent cell and all cells; examples."""
    lines = [
        f"=== demo headline (judge: {judge or 'library default'}; a cell counts only with mean "
        f"coherence >= {floor:g}; [95% intervals over questions]) ==="
    ]
    for trait, table in tables.items():
        lines.append(f"{trait}:")
        lines += describe_trait(columns[trait], table, floor)
    for trait, table in tables.items():
        examples = example_answers(table, columns[trait], floor)
        if examples:
            lines.append(f"\nexample ({trait}; the best cell's median-{columns[trait]} answer, not its best):")
            lines += examples
    return "\n".join(lines)


def projection_summary(files: Sequence[Path], *, ci: float = 0.95) -> pd.DataFrame:
    """Mean of every projection column per evaluated file, with `_ci_low`/`_ci_high`: one row per cell."""
    rows = []
    for path in map(Path, files):
        df = read_table(path)
        row: dict[str, object] = {"cell": path.stem}
        for c in (c for c in df.columns if "_proj_layer" in c):
            found = mean_interval(df, c, ci=ci)
            row |= {**found.columns(c), "n_questions": found.n_questions}
        rows.append(row)
    return pd.DataFrame(rows)


# --- held-out selection ---------------------------------------------------------------------------


def _cells_of(files: Sequence[Path]) -> tuple[pd.DataFrame, dict[CellKey, pd.DataFrame]]:
    """The baseline frame and the sweep cells by (layer, coef) of a trait's planned files."""
    baseline: pd.DataFrame | None = None
    cells: dict[CellKey, pd.DataFrame] = {}
    for path in map(Path, files):
        _, layer, coef = _cell_key(path)
        if layer is None:
            baseline = read_table(path)
        else:
            cells[(layer, coef)] = read_table(path)
    if baseline is None:
        raise ValueError(f"no {{trait}}_baseline.csv among {[str(p) for p in files]}: each set needs its baseline")
    return baseline, cells


def held_out_headlines(
    selection_files: Mapping[str, Sequence[Path]],
    report_files: Mapping[str, Sequence[Path]],
    columns: Mapping[str, str],
    *,
    floor: float = COHERENCE_FLOOR,
    ci: float = 0.95,
) -> dict[str, Headline]:
    """Per trait: the best cell chosen on the selection files and measured on the report files.

    Each mapping gives a trait's baseline file and sweep cell files (as `cell_table` takes
    them), the selection set run on one question set (e.g. the trait's extract questions),
    the report set on a disjoint one (its eval questions); `columns` maps trait -> score column.
    """
    out = {}
    for trait, files in selection_files.items():
        base_sel, sel = _cells_of(files)
        base_rep, rep = _cells_of(report_files[trait])
        out[trait] = select_best(
            sel, rep, base_sel, base_rep, trait_column=columns[trait], coherence_floor=floor, ci=ci
        )
    return out


def held_out_rows(headlines: Mapping[str, Headline]) -> pd.DataFrame:
    """headline.csv: one row per trait, with intervals, the effect flag and both question sets."""
    return pd.DataFrame([{"trait": trait, **h.row()} for trait, h in headlines.items()])


def held_out_text(headlines: Mapping[str, Headline], judge: str) -> str:
    """The printed held-out headline of every trait."""
    first = next(iter(headlines.values()), None)
    floor, ci = (first.floor, first.ci) if first else (COHERENCE_FLOOR, 0.95)
    lines = [
        f"=== headline, held out (judge: {judge or 'library default'}; best cell among those with mean "
        f"coherence >= {floor:g}, chosen on one question set, measured on another; [{ci:.0%} intervals]) ==="
    ]
    for trait, h in headlines.items():
        lines.append(f"{trait} ({h.trait_column}):")
        lines += h.lines()
    return "\n".join(lines)
