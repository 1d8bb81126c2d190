"""One summary table for any evaluation output: every cell's mean scores with intervals, and deltas to the baseline.

Inputs (`find_cells`): one eval CSV; a steering sweep folder (`{trait}_baseline.csv` and cells
`{trait}_steer_{type}_layer_{L}_coef_{c}.csv`, each trait against its own baseline); or an
`eval.multi_persona` experiment folder (`cells/*.csv`, against the `baseline` cell of an
interference run or the unsteered `a_0.0_b_0.0` cell of a linearity run). `*.answers.csv`
files (answers still waiting for their judge) are never read.

Metrics are the numeric score columns of a cell: trait judge columns, coherence, projection
columns. Intervals are question-clustered and deltas paired by question
(`persona.analysis.stats`); a `seed` column is one more level inside a question.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from persona.analysis.multi_persona import BASELINE, linearity_cell_name
from persona.analysis.results import is_projection_column, parse_sweep_name
from persona.analysis.stats import Interval, Method, QuestionMismatch, mean_interval, paired_delta, score_interval
from persona.io import read_table
from persona.judge import COHERENCE

log = logging.getLogger(__name__)

IDENTIFIER_COLUMNS = ("question_id", "seed", "sample")
SUMMARY_COLUMNS = ["cell", "metric", "n_questions", "n_answers", "mean", "ci_low", "ci_high"]
DELTA_COLUMNS = ["delta", "delta_ci_low", "delta_ci_high"]
LINEARITY_BASELINE = linearity_cell_name(0.0, 0.0)
By = Literal["cell", "seed"]
BY: tuple[str, ...] = ("cell", "seed")


@dataclass
class CellGroup:
    """Cells compared with one baseline (None: no baseline), by name, with the files they came from."""

    cells: dict[str, pd.DataFrame]
    files: dict[str, Path]
    baseline: str | None = None
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)  # a baseline from outside the folder


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The score columns of an eval frame: judge scores first, then coherence, then projections."""
    numeric = [
        str(c)
        for c in frame.columns
        if c not in IDENTIFIER_COLUMNS
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]
    projections = [c for c in numeric if is_projection_column(c)]
    judged = [c for c in numeric if c not in projections and c != COHERENCE]
    return judged + ([COHERENCE] if COHERENCE in numeric else []) + projections


EVAL_COLUMNS = ("question_id", "answer")  # what makes a CSV an eval CSV (a cell)


def _csvs(folder: Path) -> list[Path]:
    """The folder's eval CSVs. Other tables beside them (a summary written into the folder, the
    demo's `cells.csv`) are skipped, so summarizing a folder twice reads the same cells."""
    found = []
    for p in sorted(folder.glob("*.csv")):
        if p.name.endswith(".answers.csv"):
            continue
        header = pd.read_csv(p, nrows=0).columns
        if all(c in header for c in EVAL_COLUMNS):
            found.append(p)
        else:
            log.info("%s: not an eval CSV (no %s columns), skipped", p, " / ".join(EVAL_COLUMNS))
    return found


def _read(paths: Mapping[str, Path]) -> dict[str, pd.DataFrame]:
    return {name: read_table(path, required=("question_id",)) for name, path in paths.items()}


def find_cells(path: str | Path, baseline: str | Path | None = None) -> list[CellGroup]:
    """The cell groups of an eval CSV, a sweep folder or an experiment folder (see the module docstring).

    `baseline` (an eval CSV) replaces the folder's own baseline for every cell.
    """
    path = Path(path)
    if path.is_file():
        groups = [CellGroup(_read({path.stem: path}), {path.stem: path})]
    elif (path / "cells").is_dir():
        files = {p.stem: p for p in _csvs(path / "cells")}
        if not files:
            raise FileNotFoundError(f"{path / 'cells'}: no cell files (<cell>.csv)")
        own = next((n for n in (BASELINE, LINEARITY_BASELINE) if n in files), None)
        groups = [CellGroup(_read(files), files, own)]
    elif path.is_dir():
        groups = _sweep_groups(path)
    else:
        raise FileNotFoundError(f"{path}: no such eval CSV or folder")
    if baseline is not None:
        baseline = Path(baseline)
        frame = read_table(baseline, required=("question_id",))
        for g in groups:
            g.extra, g.baseline = {f"baseline ({baseline.name})": frame}, f"baseline ({baseline.name})"
            g.files[g.baseline] = baseline
    return groups


def _sweep_groups(folder: Path) -> list[CellGroup]:
    """Per trait: its `{trait}_baseline.csv` and sweep cells; any other CSV is a cell of its own."""
    by_trait: dict[str, dict[str, Path]] = {}
    loose: dict[str, Path] = {}
    for p in _csvs(folder):
        parsed = parse_sweep_name(p.name)
        if parsed:
            by_trait.setdefault(parsed[0], {})[p.stem] = p
        elif p.name.endswith("_baseline.csv"):
            by_trait.setdefault(p.name[: -len("_baseline.csv")], {})[p.stem] = p
        else:
            loose[p.stem] = p
    if not by_trait and not loose:
        raise FileNotFoundError(f"{folder}: no eval CSVs (expected {{trait}}_baseline.csv and sweep cells)")
    groups = []
    for trait, files in sorted(by_trait.items()):
        own = f"{trait}_baseline"
        ordered = dict(sorted(files.items(), key=lambda kv: (kv[0] != own, _sweep_order(kv[0]))))
        groups.append(CellGroup(_read(ordered), ordered, own if own in files else None))
    if loose:
        groups.append(CellGroup(_read(loose), loose))
    return groups


def _sweep_order(stem: str) -> tuple:
    parsed = parse_sweep_name(stem + ".csv")
    return (parsed[1], parsed[2], parsed[3]) if parsed else ("", 0, 0.0)


def _split(frame: pd.DataFrame, by: By) -> dict[object, pd.DataFrame]:
    if by == "cell" or "seed" not in frame.columns:
        return {None: frame}
    return {seed: part for seed, part in frame.groupby("seed", sort=True)}


def summarize_group(group: CellGroup, *, ci: float = 0.95, by: By = "cell", method: Method = "t") -> pd.DataFrame:
    """One row per (cell, metric) of a group; with a baseline, the paired delta of every other cell.

    Raises ValueError naming the cell file and the differing question ids when a cell does
    not hold the baseline's questions.
    """
    if by not in BY:
        raise ValueError(f"by={by!r}: expected one of {', '.join(BY)}")
    frames = {**group.cells, **group.extra}
    base = frames.get(group.baseline) if group.baseline else None
    rows = []
    for name, frame in frames.items():
        for seed, part in _split(frame, by).items():
            base_part = None
            if base is not None and name != group.baseline:
                base_part = _split(base, by).get(seed, base) if seed is not None else base
            for metric in metric_columns(frame):
                interval = mean_interval if is_projection_column(metric) else score_interval  # scores stay on 0-100
                found = interval(part, metric, ci=ci, method=method)
                row: dict[str, object] = {"cell": name, **({"seed": seed} if by == "seed" else {})}
                row |= {"metric": metric, "n_questions": found.n_questions, "n_answers": found.n_answers}
                row |= {"mean": found.mean, "ci_low": found.ci_low, "ci_high": found.ci_high}
                if base_part is not None and metric in base_part.columns:
                    try:
                        delta = paired_delta(part, base_part, metric, ci=ci, method=method)
                    except QuestionMismatch as err:
                        raise ValueError(
                            f"{group.files.get(name, name)}: {err} vs {group.files[group.baseline or '']}; "
                            "compare cells evaluated on the same questions"
                        ) from err
                    row |= delta.columns("delta")
                rows.append(row)
    columns = SUMMARY_COLUMNS[:1] + (["seed"] if by == "seed" else []) + SUMMARY_COLUMNS[1:]
    table = pd.DataFrame(rows)
    if base is not None:
        columns += DELTA_COLUMNS
    return table.reindex(columns=columns)


def summarize(
    path: str | Path, baseline: str | Path | None = None, *, ci: float = 0.95, by: By = "cell", method: Method = "t"
) -> pd.DataFrame:
    """The summary table of an eval CSV, sweep folder or experiment folder (rows: cell, metric)."""
    groups = find_cells(path, baseline)
    tables = [summarize_group(g, ci=ci, by=by, method=method) for g in groups]
    return pd.concat(tables, ignore_index=True).reindex(columns=max((t.columns for t in tables), key=len))


def summary_lines(table: pd.DataFrame, ci: float = 0.95) -> list[str]:
    """The table as text: `mean [ci]` and `delta [ci]` rounded to what each interval justifies."""
    shown = pd.DataFrame(
        {
            "cell": table["cell"],
            **({"seed": table["seed"]} if "seed" in table.columns else {}),
            "metric": table["metric"],
            "questions": table["n_questions"],
            "answers": table["n_answers"],
            f"mean [{ci:.0%} CI]": [
                Interval(int(r.n_questions), int(r.n_answers), r.mean, r.ci_low, r.ci_high).text()
                for r in table.itertuples()
            ],
        }
    )
    if "delta" in table.columns:
        shown[f"delta vs baseline [{ci:.0%} CI]"] = [
            "" if pd.isna(r.delta) else Interval(0, 0, r.delta, r.delta_ci_low, r.delta_ci_high).text(signed=True)
            for r in table.itertuples()
        ]
    return shown.to_string(index=False).splitlines()
