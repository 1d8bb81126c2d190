"""Held-out selection of a best steered cell: choose it on one set of questions, report it on another.

Picking the best of several cells and reporting its score on the questions it was picked on
inflates the score (winner's curse: the winner is partly the cell whose noise was luckiest).
`select_best` chooses among the cells on the selection questions and measures only the chosen
cell, against the baseline, on disjoint report questions; it refuses sets that share a question.

Cell keys are `(layer, coef)` tuples or names; a name that is a sweep cell file name
(`persona.evaluation.sweep_filename`) is read as its layer and coef. Ties in the trait score
go to the smaller |coef|, then the lower layer (the gentler intervention), then the name.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import pandas as pd

from persona.analysis.results import parse_sweep_name
from persona.analysis.stats import NAN_INTERVAL, Interval, paired_delta, score_interval

COHERENCE_FLOOR = 80.0
CellKey = Hashable  # (layer, coef) or a name
# a cell's trait and coherence means with their intervals, as the cell tables hold them
SCORE_COLUMNS = [f"{m}{end}" for m in ("trait", "coherence") for end in ("", "_ci_low", "_ci_high")]
CANDIDATE_COLUMNS = ["cell", "layer", "coef", "n_questions", *SCORE_COLUMNS, "eligible"]


def layer_coef(key: CellKey) -> tuple[int | None, float | None]:
    """(layer, coef) of a cell key: a `(layer, coef)` tuple or a sweep file name; (None, None) otherwise."""
    if isinstance(key, tuple) and len(key) == 2:
        return int(key[0]), float(key[1])
    parsed = parse_sweep_name(str(key))
    return (parsed[2], parsed[3]) if parsed else (None, None)


def cell_label(key: CellKey) -> str:
    """`layer 10, coef 3` for a sweep cell key (tuple or file name), the key itself for any other name."""
    layer, coef = layer_coef(key)
    return str(key) if layer is None else f"layer {layer}, coef {coef:g}"


def _gentleness(key: CellKey) -> tuple[float, float, str]:
    layer, coef = layer_coef(key)
    return (math.inf, math.inf, str(key)) if layer is None else (abs(float(coef or 0.0)), float(layer), str(key))


@dataclass(frozen=True, eq=False)
class Headline:
    """A best cell chosen on the selection questions and measured on the report questions.

    `effect` is True only when the chosen cell's trait delta against the baseline on the
    report questions has an interval above 0 and its mean coherence there is at least `floor`.
    """

    trait_column: str
    floor: float
    ci: float
    selected: CellKey | None
    selection_questions: tuple[str, ...]
    report_questions: tuple[str, ...]
    candidates: pd.DataFrame  # every cell on the selection questions (CANDIDATE_COLUMNS)
    selection_baseline: Interval
    baseline: Interval
    baseline_coherence: Interval
    best: Interval = NAN_INTERVAL
    best_coherence: Interval = NAN_INTERVAL
    delta: Interval = NAN_INTERVAL
    effect: bool = False

    def verdict(self) -> str:
        if self.selected is None:
            return f"no steering win: no cell kept mean coherence >= {self.floor:g} on the selection questions"
        if self.best_coherence.mean < self.floor:
            return f"not a steering effect: coherence fell below {self.floor:g} on the report questions"
        if self.effect:
            return f"steering effect: the {self.ci:.0%} interval of the delta lies above 0"
        return f"no demonstrated steering effect: the {self.ci:.0%} interval of the delta includes 0"

    def _same_ids(self) -> str:
        """Each question set numbers its own questions, so disjoint sets can show the same ids."""
        return (
            "; ids are numbered within each set" if set(self.selection_questions) == set(self.report_questions) else ""
        )

    def lines(self, digits: int | None = 1) -> list[str]:
        """The printed headline: which questions chose the cell, which measured it, and the numbers."""
        below = int((~self.candidates["eligible"]).sum())
        lines = [
            f"  chosen on {len(self.selection_questions)} selection questions "
            f"({', '.join(self.selection_questions)}) among {len(self.candidates)} cells "
            f"({below} below coherence {self.floor:g}); measured on {len(self.report_questions)} "
            f"other questions ({', '.join(self.report_questions)}{self._same_ids()})"
        ]
        if self.selected is not None:
            lines.append(
                f"  {cell_label(self.selected)}: baseline {self.baseline.text(digits)} -> best "
                f"{self.best.text(digits)}, delta {self.delta.text(digits, signed=True)} "
                f"(coherence {self.best_coherence.text(digits)})"
            )
        lines.append(f"  {self.verdict()}")
        return lines

    def row(self) -> dict[str, object]:
        """One headline.csv row (trait name added by the caller)."""
        layer, coef = layer_coef(self.selected) if self.selected is not None else (None, None)
        return {
            "best_cell": None if self.selected is None else cell_label(self.selected),
            "best_layer": layer,
            "best_coef": coef,
            "n_questions": self.baseline.n_questions,
            **self.baseline.columns("baseline_trait"),
            **self.baseline_coherence.columns("baseline_coherence"),
            **self.best.columns("best_trait"),
            **self.best_coherence.columns("best_coherence"),
            **self.delta.columns("delta"),
            "effect": self.effect,
            "cells": len(self.candidates),
            "cells_below_floor": int((~self.candidates["eligible"]).sum()),
            "selection_questions": " ".join(self.selection_questions),
            "report_questions": " ".join(self.report_questions),
        }


def _question_texts(frames: Mapping[CellKey, pd.DataFrame] | list[pd.DataFrame]) -> set[str]:
    values = frames.values() if isinstance(frames, Mapping) else frames
    texts: set[str] = set()
    for f in values:
        if "question" not in f.columns:
            raise ValueError("a cell frame has no question column (needed to prove the question sets disjoint)")
        texts |= set(f["question"].astype(str).str.strip())
    return texts


def _ids(frame: pd.DataFrame) -> tuple[str, ...]:
    return tuple(sorted(frame["question_id"].astype(str).unique()))


def candidate_table(cells: Mapping[CellKey, pd.DataFrame], trait_column: str, floor: float, ci: float) -> pd.DataFrame:
    """Every cell's trait and coherence (with intervals) on the selection questions, and whether it may win."""
    rows = []
    for key, frame in cells.items():
        layer, coef = layer_coef(key)
        trait = score_interval(frame, trait_column, ci=ci)
        coherence = score_interval(frame, "coherence", ci=ci)
        rows.append(
            {
                "cell": key,
                "layer": layer,
                "coef": coef,
                "n_questions": trait.n_questions,
                **trait.columns("trait"),
                **coherence.columns("coherence"),
                "eligible": bool(coherence.mean >= floor),
            }
        )
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)


def select_best(
    selection_cells: Mapping[CellKey, pd.DataFrame],
    report_cells: Mapping[CellKey, pd.DataFrame],
    baseline_selection: pd.DataFrame,
    baseline_report: pd.DataFrame,
    *,
    trait_column: str,
    coherence_floor: float = COHERENCE_FLOOR,
    ci: float = 0.95,
) -> Headline:
    """Choose the cell with the highest mean trait among those with mean coherence >= the floor on
    the selection questions; report it against the baseline on the report questions.

    `report_cells` needs only the chosen cell. Raises ValueError when a question text appears
    in both sets, when the chosen cell was not run on the report questions, and
    `QuestionMismatch` when the chosen cell and the report baseline hold different questions.
    """
    if not selection_cells:
        raise ValueError("selection_cells is empty: give the steered cells run on the selection questions")
    shared = _question_texts([baseline_selection, *selection_cells.values()]) & _question_texts(
        [baseline_report, *report_cells.values()]
    )
    if shared:
        listed = "; ".join(sorted(shared)[:3]) + (f" and {len(shared) - 3} more" if len(shared) > 3 else "")
        raise ValueError(
            f"the selection and report questions share {len(shared)} question(s) ({listed}): "
            "choose on one question set and report on a disjoint one"
        )
    candidates = candidate_table(selection_cells, trait_column, coherence_floor, ci)
    eligible = candidates[candidates["eligible"] & candidates["trait"].notna()]
    common = {
        "trait_column": trait_column,
        "floor": coherence_floor,
        "ci": ci,
        "selection_questions": _ids(baseline_selection),
        "report_questions": _ids(baseline_report),
        "candidates": candidates,
        "selection_baseline": score_interval(baseline_selection, trait_column, ci=ci),
        "baseline": score_interval(baseline_report, trait_column, ci=ci),
        "baseline_coherence": score_interval(baseline_report, "coherence", ci=ci),
    }
    if eligible.empty:
        return Headline(selected=None, **common)
    top = eligible["trait"].max()
    selected = min(eligible.loc[eligible["trait"] == top, "cell"], key=_gentleness)
    if selected not in report_cells:
        raise ValueError(
            f"cell {cell_label(selected)} was chosen but report_cells has no such cell: "
            "run the chosen cell on the report questions"
        )
    report = report_cells[selected]
    best_coherence = score_interval(report, "coherence", ci=ci)
    delta = paired_delta(report, baseline_report, trait_column, ci=ci)
    return Headline(
        selected=selected,
        best=score_interval(report, trait_column, ci=ci),
        best_coherence=best_coherence,
        delta=delta,
        effect=bool(delta.ci_low > 0 and best_coherence.mean >= coherence_floor),
        **common,
    )
