"""Read the explorer's folders: the vectors folder and an output folder of evaluations.

Reading goes through `persona.analysis` (the readers the figures and the report use), so the
explorer shows the numbers the report shows.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from persona.analysis.geometry import cosine_table, norms_by_layer
from persona.analysis.results import SWEEP_PATTERN, load_steering_sweep, load_vectors, no_files_error, parse_sweep_name
from persona.io import read_table
from persona.traits import base_trait

BASELINE_SUFFIX = "_baseline.csv"


def folder_vectors(folder: str | os.PathLike) -> dict[str, Path]:
    """Every `.pt` file of `folder`, by file name without `_diff.pt` (`evil_response_avg`)."""
    folder = Path(folder)
    found = {p.stem.removesuffix("_diff"): p for p in sorted(folder.glob("*.pt"))} if folder.is_dir() else {}
    if not found:
        raise no_files_error(folder, "*.pt (persona vectors written by generate_vec.py)")
    return found


def vector_geometry(folder: str | os.PathLike, layer: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cosine table at `layer`, norms by layer) of a folder's vectors (one model's, one shape)."""
    vectors = load_vectors(folder_vectors(folder))
    return cosine_table(vectors, int(layer)), norms_by_layer(vectors)


def sweep_cells(folder: str | os.PathLike) -> dict[str, Path]:
    """Every steering cell CSV under `folder` (a sweep, a demo, an experiment), by path inside it."""
    folder = Path(folder)
    found = (
        {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*.csv")) if parse_sweep_name(p.name)}
        if folder.is_dir()
        else {}
    )
    if not found:
        raise no_files_error(folder, SWEEP_PATTERN + " (in it or a subfolder)")
    return found


def sweep_summary(cell: str | os.PathLike) -> pd.DataFrame:
    """Mean scores of every cell in the cell's folder, with the baseline as the first row."""
    path = Path(cell)
    cells, baselines = load_steering_sweep(path.parent)
    trait = _trait_of(path)
    cells = cells[cells["trait"] == trait].drop(columns=["trait", "judge"])
    base = baselines[baselines["trait"] == trait].drop(columns=["trait"]).assign(steering_type="baseline")
    return pd.concat([base, cells], ignore_index=True)[["steering_type", "layer", "coef", "score", "coherence", "n"]]


def _trait_of(path: Path) -> str:
    parsed = parse_sweep_name(path.name)
    if parsed is None:
        raise ValueError(f"{path}: not a steering cell file (expected a name like {SWEEP_PATTERN})")
    return parsed[0]


def _with_occurrence(df: pd.DataFrame) -> pd.DataFrame:
    """Rows keyed by (question_id, k-th sample of that question), so samples pair up in order."""
    return df.assign(sample=df.groupby("question_id").cumcount())


def cell_with_baseline(cell: str | os.PathLike) -> pd.DataFrame:
    """A cell's answers and scores beside the baseline's answers to the same questions (same sample index).

    Without a `{trait}_baseline.csv` beside the cell the baseline columns stay empty.
    """
    path = Path(cell)
    trait = _trait_of(path)
    score = base_trait(trait)
    columns = ["question_id", "question", "answer", score, "coherence"]
    steered = _with_occurrence(read_table(path, required=tuple(columns))[columns])
    baseline_path = path.with_name(trait + BASELINE_SUFFIX)
    if baseline_path.is_file():
        baseline = _with_occurrence(read_table(baseline_path, required=tuple(columns))[columns])
    else:
        baseline = pd.DataFrame(columns=[*columns, "sample"])
    baseline = baseline.drop(columns=["question"]).rename(
        columns={"answer": "baseline answer", score: f"baseline {score}", "coherence": "baseline coherence"}
    )
    merged = steered.merge(baseline, on=["question_id", "sample"], how="left")
    return merged.drop(columns=["sample"])
