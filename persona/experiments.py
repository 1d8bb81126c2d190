"""The multi-persona experiments as one library call: plan the cells, evaluate them, write the tables.

`run_experiment(Experiment(...))` is what `python -m eval.multi_persona` and the demo call.
An `Experiment` is a linearity grid (`a*v_A + b*v_B`) or an interference set (each v_A alone)
over the questions of every trait of its `EvalSpec` (`trait` then `extra_traits`), every
answer judged for every trait. Its cells are `Job`s run by `persona.evaluation.run_evaluation`
(packed in one process, resumable, each with its records) into `<output_dir>/cells/`; the
folder's `settings.json` must match a rerun's settings. The tables (see
`persona.analysis.multi_persona`) land beside it as CSVs; figures are drawn outside the library
(`viz.plot_multi_persona.save_experiment_figure`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from persona.analysis.geometry import cosine_table
from persona.analysis.multi_persona import (
    BASELINE,
    additivity,
    additivity_summary,
    check_settings,
    interference,
    interference_cells,
    interference_fit,
    linearity_cells,
    question_grid,
)
from persona.analysis.results import load_vectors, score_means, vector_files, warn_missing
from persona.evaluation import Cell, EvalRun, EvalSpec, Job, run_evaluation
from persona.fingerprint import model_ref, tensor_sha256
from persona.io import read_table, write_csv
from persona.judge import COHERENCE
from persona.layer_choice import resolve_layer
from persona.layout import Layout
from persona.models import load_model
from persona.preflight import check_output_path
from persona.steering import Positions
from persona.traits import Trait

Kind = Literal["linearity", "interference"]


@dataclass
class Experiment:
    """One multi-persona experiment: its kind, the traits' questions and judges (`spec`), vectors, cells.

    `vectors` maps each trait of `spec` to its vector file; `layer` may be "auto" (the best
    held-out layer, `persona.layer_choice`). `coef` is interference's coefficient, `coefs_a` /
    `coefs_b` linearity's grid (0 is always added to both axes). `output_dir` None:
    `output/multi_persona/<model>/<kind>_...`.
    """

    kind: Kind
    spec: EvalSpec
    vectors: Mapping[str, Path]
    layer: int | str = 20
    steering_type: Positions = "response"
    coef: float = 2.0
    coefs_a: Sequence[float] = (0.0, 1.0, 2.0)
    coefs_b: Sequence[float] = (0.0, 1.0, 2.0)
    output_dir: Path | None = None

    @property
    def trait_names(self) -> list[str]:
        return [self.spec.trait, *self.spec.extra_traits]


@dataclass
class ExperimentResult:
    """What `run_experiment` found: the folder, its traits and resolved layer, the tables written, summary lines."""

    experiment: Experiment
    out: Path
    traits: list[Trait]
    run: EvalRun | None  # None with `no_run` (the cells on disk were tabulated only)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # written as <out>/<name>.csv
    lines: list[str] = field(default_factory=list)


def experiment_vectors(
    traits: Sequence[str],
    paths: Sequence[str | Path] | None = None,
    folder: Path | None = None,
    *,
    suffix: str = "response_avg_diff",
    model: str = "",
) -> dict[str, Path]:
    """One vector file per trait: `paths` in trait order, else `<folder>/{trait}_{suffix}.pt` (default folder:
    the model's vector folder)."""
    if paths:
        if len(paths) != len(traits):
            raise ValueError(f"`vector_path` gives {len(paths)} files for {len(traits)} `traits`; give one per trait")
        return {t: Path(p) for t, p in zip(traits, paths, strict=True)}
    return vector_files(folder or Layout(model).vectors_dir, suffix, traits)


def _traits(exp: Experiment) -> list[Trait]:
    """The experiment's traits with their questions cut to `max_questions`; each needs its own score column."""
    traits = exp.spec.load_traits()
    names = [t.name for t in traits]
    if exp.kind == "linearity" and len(traits) != 2:
        raise ValueError(f"linearity takes exactly two `traits` (A B), got {names}")
    if exp.kind == "interference" and len(traits) < 2:
        raise ValueError(f"interference needs at least two `traits`, got {names}")
    columns = [t.judge_column for t in traits]
    if len(set(columns)) != len(columns):
        raise ValueError(f"`traits` {names} share judge columns {columns}: each trait needs its own score column")
    return traits


def _plan(exp: Experiment, vectors: dict[str, torch.Tensor]) -> tuple[list[Cell], list[tuple[float, float]], dict]:
    """The cells, their (a, b) grid points (linearity) and the settings a rerun must share.

    Grid coefficients only name cells, so a rerun may grow the grid; everything else must match.
    """
    names, spec = exp.trait_names, exp.spec
    extra: dict[str, Any] = {}
    if exp.kind == "linearity":
        grid = linearity_cells(
            vectors[names[0]], vectors[names[1]], int(exp.layer), exp.coefs_a, exp.coefs_b, exp.steering_type
        )
        cells, points = [c for _, _, c in grid], [(a, b) for a, b, _ in grid]
    else:
        cells, points = interference_cells(vectors, int(exp.layer), exp.coef, exp.steering_type), []
        extra = {"coef": exp.coef}
    settings = {
        "experiment": exp.kind,
        "model": spec.model,
        "traits": names,
        "layer": exp.layer,
        "vectors": {n: str(p) for n, p in exp.vectors.items()},
        "vector_sha256": {n: tensor_sha256(v) for n, v in vectors.items()},
        "model_ref": model_ref(spec.model),
        "steering_type": exp.steering_type,
        "n_per_question": spec.n_per_question,
        "max_questions": spec.max_questions,
        "max_tokens": spec.max_tokens,
        "temperature": spec.temperature,
        "seed": spec.seed,
        "judge_model": spec.judge.judge_model,
        **extra,
    }
    return cells, points, settings


def _default_dir(exp: Experiment, traits: list[Trait]) -> Path:
    layout = Layout(exp.spec.model)
    name = (
        f"linearity_{traits[0].name}_{traits[1].name}_layer{exp.layer}"
        if exp.kind == "linearity"
        else f"interference_layer{exp.layer}_coef{exp.coef:g}"
    )
    return Path(layout.root) / "multi_persona" / layout.name / name


def run_experiment(
    exp: Experiment,
    *,
    overwrite: bool = False,
    no_run: bool = False,
    on_finished: Callable[[Job, pd.DataFrame], None] | None = None,
) -> ExperimentResult:
    """Evaluate the experiment's missing cells (none with `no_run`), then tabulate every cell on disk.

    Missing cells are listed in one warning and left as gaps; with no cell on disk at all,
    `FileNotFoundError`. `on_finished(job, scored)` is called as each cell lands.
    """
    check_output_path(exp.output_dir, folder=True)  # before any model loads
    traits = _traits(exp)
    vectors = load_vectors(dict(exp.vectors))
    layer, choice = resolve_layer(
        exp.layer, list(exp.vectors.values()), load=lambda: load_model(exp.spec.model, device=exp.spec.device)
    )
    exp = replace(exp, layer=layer)
    cells, points, settings = _plan(exp, vectors)
    settings.update({"layer_choice": choice.record()} if choice else {})
    out = exp.output_dir or _default_dir(exp, traits)
    jobs = [Job(c, out / "cells" / f"{c.name}.csv") for c in cells]
    evaluated = None
    if not no_run:
        check_settings(out, settings, overwrite=overwrite)
        evaluated = run_evaluation(exp.spec, jobs, overwrite=overwrite, on_finished=on_finished)
    columns = [t.judge_column for t in traits] + [COHERENCE]
    means = _cell_means(jobs, columns)
    if not means:
        raise FileNotFoundError(f"{out / 'cells'}: no cell files (<cell>.csv); evaluate them first (without `no_run`)")
    result = ExperimentResult(exp, out, traits, evaluated)
    frames = {n: read_table(p) for n, p in ((j.cell.name, j.output) for j in jobs) if p.exists()}
    if exp.kind == "linearity":
        _linearity(result, cells, points, means, frames, columns)
    else:
        _interference(result, vectors, means, frames)
    for name, table in result.tables.items():
        write_csv(out / f"{name}.csv", table)
    return result


def _cell_means(jobs: list[Job], columns: list[str]) -> dict[str, dict[str, float]]:
    """Mean scores of every cell on disk; missing cells are listed in one warning."""
    means = {
        j.cell.name: score_means(read_table(j.output, required=tuple(columns)), columns)
        for j in jobs
        if j.output.exists()
    }
    warn_missing("cells", [j.cell.name for j in jobs if j.cell.name not in means])
    return means


def _linearity(
    result: ExperimentResult,
    cells: list[Cell],
    points: list[tuple[float, float]],
    means: dict,
    frames: dict[str, pd.DataFrame],
    metrics: list[str],
) -> None:
    rows = [{"a": a, "b": b, **means[c.name]} for (a, b), c in zip(points, cells, strict=True) if c.name in means]
    grid = pd.DataFrame(rows, columns=["a", "b", *metrics])
    by_point = {point: frames[c.name] for point, c in zip(points, cells, strict=True) if c.name in frames}
    table = additivity(question_grid(by_point, metrics), metrics)
    summary = additivity_summary(table)
    result.tables.update({"linearity_grid": grid, "linearity": table, "linearity_summary": summary})
    result.lines += [
        f"mean scores per cell:\n{grid.round(2).to_string(index=False)}\n",
        "additivity (residual = S(a,b) - S(a,0) - S(0,b) + S(0,0), per question; 95% intervals over questions):\n"
        f"{summary.round(3).to_string(index=False)}",
    ]
    for r in summary.itertuples():
        if r.consistent_with_zero is not None:
            verdict = "consistent with zero" if r.consistent_with_zero else "not consistent with zero"
            result.lines.append(f"{r.metric}: residuals {verdict} ({r.cells_nonzero}/{r.cells} joint cells exclude 0)")


def _interference(
    result: ExperimentResult, vectors: dict[str, torch.Tensor], means: dict, frames: dict[str, pd.DataFrame]
) -> None:
    if BASELINE not in means:
        raise FileNotFoundError(
            f"{result.out / 'cells' / (BASELINE + '.csv')}: the unsteered cell is missing; "
            "evaluate it first (without `no_run`)"
        )
    columns = {t.name: t.judge_column for t in result.traits}
    table = interference(means, cosine_table(vectors, int(result.experiment.layer)), columns, frames=frames)
    matrix = table.pivot(index="steered", columns="judged", values="delta")
    fit = interference_fit(table)
    result.tables.update(
        {
            "interference": table,
            "interference_matrix": matrix.reset_index(),
            "interference_fit": pd.DataFrame([fit.columns()]),
        }
    )
    result.lines += [
        f"change in judged B when steering with v_A (rows A, columns B):\n{matrix.round(2).to_string()}",
        f"Pearson r(cos(v_A, v_B), change in B) over A != B: {fit.r:.3f} ({fit.text()})"
        if fit.defined
        else f"Pearson r(cos(v_A, v_B), change in B): {fit.text()} (too few distinct cosines; use 3+ traits)",
    ]
