"""Does a vector that reads the trait also steer it? A small sweep per method at its best held-out layers.

`eval.vector_quality --steer` measures, after the AUROC table, what each method's vector does
when added to the residual stream: for each method, its `top` layers by held-out AUROC (row 0,
the embeddings, never) times a few coefficients, plus one unsteered baseline, all evaluated by
`persona.evaluation.run_evaluation` in one call (shared batches, resumable, the usual CSVs and
records). The table holds every cell with its question-clustered intervals, its paired delta
against the baseline, whether its mean coherence clears `COHERENCE_FLOOR`, and per method the
best cell among those that do (`persona.analysis.headline.best_cell`: chosen on the questions it
is measured on, so its delta is optimistic; docs/extraction-methods.md says so).

Files, under `output_dir`: `steer/{trait}_baseline.csv`, `steer/<method>/{trait}_steer_...csv`
(`persona.evaluation.sweep_filename`), and `vector_quality_steer.csv` (rows of other traits kept).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from persona.analysis.headline import best_cell, cell_table
from persona.analysis.selection import COHERENCE_FLOOR
from persona.analysis.stats import paired_delta
from persona.evaluation import Cell, EvalSpec, Job, run_evaluation, sweep_jobs
from persona.io import read_table, write_csv
from persona.layer_choice import ranked_layers
from persona.models import LoadedModel
from persona.steering import Positions
from persona.vectors import PersonaVector

log = logging.getLogger(__name__)

STEER_FILE = "vector_quality_steer.csv"
STEER_DIR = "steer"
DEFAULT_COEFS = (1.0, 2.0, 3.0)
STEER_COLUMNS = [
    "trait",
    "method",
    "vector_file",
    "layer",
    "coef",
    "auroc",
    "trait_score",
    "trait_ci_low",
    "trait_ci_high",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "coherence",
    "coherence_ci_low",
    "coherence_ci_high",
    "clears_floor",
    "best",
    "n",
    "n_questions",
    "path",
]


def steer_layers(quality: pd.DataFrame, vector_file: str, top: int = 1) -> list[int]:
    """The `top` layers (>= 1) where `vector_file` best separates the held-out answers, best first."""
    rows = quality[quality["vector_file"] == vector_file]
    layers = ranked_layers(rows.groupby("layer")["auroc"].mean())[:top]
    if not layers:
        raise ValueError(f"{vector_file} has no measured layer >= 1 in the quality table: measure it first")
    return layers


def method_rows(
    trait: str,
    method: str,
    vector_file: str,
    baseline: Path,
    cells: Sequence[Path],
    column: str,
    auroc: Mapping[int, float],
    *,
    floor: float,
    ci: float,
) -> pd.DataFrame:
    """One row per steered cell of one method: intervals, paired delta, floor flag, and its best coherent cell."""
    table = cell_table([baseline, *cells], column, ci=ci)
    steered = table[table["layer"].notna()].copy()
    base = read_table(baseline)
    deltas = [paired_delta(read_table(path), base, column, ci=ci) for path in steered["path"]]
    best = best_cell(table, floor)
    steered["layer"] = steered["layer"].astype(int)
    return pd.DataFrame(
        {
            "trait": trait,
            "method": method,
            "vector_file": vector_file,
            "layer": steered["layer"],
            "coef": steered["coef"],
            "auroc": [auroc.get(layer, float("nan")) for layer in steered["layer"]],
            "trait_score": steered["trait"],
            "trait_ci_low": steered["trait_ci_low"],
            "trait_ci_high": steered["trait_ci_high"],
            "delta": [d.mean for d in deltas],
            "delta_ci_low": [d.ci_low for d in deltas],
            "delta_ci_high": [d.ci_high for d in deltas],
            "coherence": steered["coherence"],
            "coherence_ci_low": steered["coherence_ci_low"],
            "coherence_ci_high": steered["coherence_ci_high"],
            "clears_floor": steered["coherence"] >= floor,
            "best": steered["path"] == (best["path"] if best is not None else None),
            "n": steered["n"],
            "n_questions": steered["n_questions"],
            "path": steered["path"],
        },
        columns=STEER_COLUMNS,
    )


def baseline_row(trait: str, baseline: Path, column: str, *, ci: float, floor: float) -> pd.DataFrame:
    """The unsteered baseline as a table row (method "baseline", no layer, coef or delta)."""
    row = cell_table([baseline], column, ci=ci).iloc[0]
    values = {
        "trait": trait,
        "method": "baseline",
        "trait_score": row["trait"],
        **{c: row[c] for c in ("trait_ci_low", "trait_ci_high", "coherence", "coherence_ci_low", "coherence_ci_high")},
        "clears_floor": bool(row["coherence"] >= floor),
        "best": False,
        **{c: row[c] for c in ("n", "n_questions", "path")},
    }
    return pd.DataFrame([values], columns=STEER_COLUMNS)


def steering_check(
    spec: EvalSpec,
    vectors: Mapping[str, str | os.PathLike],
    quality: pd.DataFrame,
    output_dir: str | os.PathLike,
    *,
    coefs: Sequence[float] = DEFAULT_COEFS,
    top: int = 1,
    positions: Positions = "response",
    floor: float = COHERENCE_FLOOR,
    ci: float = 0.95,
    lm: LoadedModel | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Steer with each method's vector (`vectors`: method -> file) at its `top` best held-out layers x `coefs`.

    `quality` holds the vectors' `vector_quality.csv` rows; `spec` says what to ask and how to judge
    (its questions should be held out from extraction: `version="eval"`). Returns the rows of
    `output_dir/vector_quality_steer.csv` for this trait (the baseline first).
    """
    if top < 1 or not coefs:
        raise ValueError("the steering check needs `top` >= 1 layer and at least one coefficient in `coefs`")
    trait = spec.load_traits()[0]
    folder = Path(output_dir) / STEER_DIR
    baseline = Job(Cell("unsteered"), folder / f"{trait.name}_baseline.csv")
    plan: dict[str, tuple[Path, list[Job], dict[int, float]]] = {}
    for method, path in vectors.items():
        path = Path(path)
        layers = steer_layers(quality, path.name, top)
        rows = quality[quality["vector_file"] == path.name]
        auroc = rows.groupby("layer")["auroc"].mean().to_dict()
        jobs = sweep_jobs(trait.name, PersonaVector.load(path), layers, coefs, positions, folder / method)
        plan[method] = (path, jobs, {int(k): float(v) for k, v in auroc.items()})
        log.info("steering check: %s at layers %s x coefs %s", method, layers, list(coefs))
    jobs = [baseline, *(job for _, method_jobs, _ in plan.values() for job in method_jobs)]
    run_evaluation(spec, jobs, overwrite=overwrite, lm=lm)
    parts = [baseline_row(trait.name, baseline.output, trait.judge_column, ci=ci, floor=floor)]
    for method, (path, method_jobs, auroc) in plan.items():
        cells = [job.output for job in method_jobs]
        parts.append(
            method_rows(
                trait.name, method, path.name, baseline.output, cells, trait.judge_column, auroc, floor=floor, ci=ci
            )
        )
    table = pd.concat(parts, ignore_index=True).astype({"layer": "Int64"})  # the baseline has none
    output = Path(output_dir) / STEER_FILE
    merged = table
    if output.is_file():
        old = pd.read_csv(output)
        merged = pd.concat([old[old["trait"] != trait.name], table], ignore_index=True)
    write_csv(output, merged)
    log.info("wrote %s (%d rows for %s)", output, len(table), trait.name)
    return table
