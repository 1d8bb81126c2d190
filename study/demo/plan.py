"""The demo's stages: each names the files that prove it finished and the library call that writes them.

A stage's `call` takes no arguments: it is a step of `study.demo.steps` (or a `viz` function)
bound with `functools.partial` to typed arguments (an `EvalSpec`, paths, layers), so a test
or a reader sees exactly what each stage runs. No stage builds a command line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import pandas as pd

from persona.analysis.headline import COHERENCE_FLOOR, cell_table, held_out_headlines, held_out_rows
from persona.evaluation import EvalSpec
from persona.experiments import Experiment
from persona.io import write_csv
from persona.judge.factory import JudgeSettings
from study.demo import steps
from study.demo.paths import DemoPaths, cell_files, selection_files
from study.demo.settings import DemoSettings
from viz.plot_best_steering_layer import save_steering_layer_figures
from viz.report import write_report


@dataclass
class Stage:
    """One step of the plan: a banner title, the files that prove it finished, and the call that writes them."""

    title: str
    outputs: list[Path]
    call: Callable[[], object]

    def done(self) -> bool:
        return bool(self.outputs) and all(p.exists() for p in self.outputs)


def eval_spec(
    s: DemoSettings,
    trait: str,
    version: Literal["eval", "extract"],
    questions: int,
    *,
    samples: int = 1,
    instruction_type: Literal["pos", "neg"] | None = None,
    extra_traits: Sequence[str] = (),
) -> EvalSpec:
    """The demo's model, judge and generation settings; one greedy answer per question unless `samples` > 1."""
    return EvalSpec(
        model=s.model,
        trait=trait,
        extra_traits=tuple(extra_traits),
        version=version,
        n_per_question=samples,
        max_questions=questions,
        instruction_type=instruction_type,
        max_tokens=s.max_tokens,
        batch_size=s.batch_size,
        judge=JudgeSettings(judge_model=s.judge or None),  # empty: the library's default judge
    )


def _fmt(values: Sequence[object]) -> str:
    return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _cell_stages(s: DemoSettings, paths: DemoPaths, t: str, version: Literal["eval", "extract"]) -> list[Stage]:
    """The unsteered baseline and the steering sweep of a trait on one question set (eval or extract)."""
    held_out = version == "eval"
    n = s.eval_questions if held_out else s.selection_questions
    role = "held-out eval questions: these measure" if held_out else "selection questions: these choose"
    baseline = paths.baseline(t) if held_out else paths.selection_baseline(t)
    sweep = paths.sweep if held_out else paths.selection_sweep
    spec = eval_spec(s, t, version, n)
    return [
        Stage(f"{t}: unsteered baseline ({n} {role})", [baseline], partial(steps.evaluate, spec, baseline)),
        Stage(
            f"{t}: steering sweep, layers {_fmt(s.layers)} x coefs {_fmt(s.coefs)} ({n} {role}; one in-process sweep)",
            [sweep(t, layer, coef) for layer in s.layers for coef in s.coefs],
            partial(
                steps.evaluate_sweep,
                spec,
                vector=paths.vector(t),
                layers=s.layers,
                coefs=s.coefs,
                positions=s.steering_type,
                out_dir=baseline.parent,
            ),
        ),
    ]


def plan(
    s: DemoSettings,
    paths: DemoPaths,
    *,
    judge_column: Callable[[str], str],
    training_template: Path = Path("configs/train_demo.json"),
    dataset_zip: Path = Path("dataset.zip"),
) -> list[Stage]:
    """Every stage of the study, in order, with the files that prove each one finished."""
    stages: list[Stage] = []
    for t in s.traits:
        for kind in ("pos", "neg"):
            spec = eval_spec(s, t, "extract", s.extract_questions, samples=s.extract_samples, instruction_type=kind)
            stages.append(
                Stage(
                    f"{t}: {kind} persona evaluation ({s.extract_questions} extract questions x 5 {kind} prompts "
                    f"x {s.extract_samples} {'samples' if s.extract_samples > 1 else 'greedy answer'})",
                    [paths.extract(t, kind)],
                    partial(steps.evaluate, spec, paths.extract(t, kind)),
                )
            )
        stages.append(
            Stage(
                f"{t}: persona vector extraction (pos - neg mean activations)",
                [paths.vector(t)],
                partial(
                    steps.extract_vectors,
                    s.model,
                    t,
                    paths.extract(t, "pos"),
                    paths.extract(t, "neg"),
                    paths.vector(t).parent,
                ),
            )
        )
    for t in s.traits:
        stages += _cell_stages(s, paths, t, "eval")
        stages += _cell_stages(s, paths, t, "extract")
    vectors = [str(paths.vector(t)) for t in s.traits]
    for t in s.traits:
        stages.append(
            Stage(
                f"{t}: projection of baseline and steered answers onto {', '.join(s.traits)} vectors "
                f"(layers {_fmt(s.layers)})",
                [paths.projections(t)],
                partial(
                    steps.project_cells,
                    s.model,
                    cell_files(s, paths, t),
                    vectors,
                    s.layers,
                    s.batch_size,
                    paths.projections(t),
                ),
            )
        )
    ft = s.finetune_trait
    stages.append(
        Stage(
            f"{ft}: finetuning data (dataset.zip: {ft}/misaligned_2) and two LoRA configs",
            [paths.finetune_data(ft)] + [paths.run_dir(ft, steered).with_suffix(".json") for steered in (False, True)],
            partial(steps.finetune_inputs, s, paths, training_template, dataset_zip),
        )
    )
    for steered in (False, True):
        what = (
            f"with preventative steering (+{s.focus_coef:g} x {ft} vector at layer {s.focus_layer})"
            if steered
            else "plain"
        )
        stages.append(
            Stage(
                f"{ft}: LoRA finetune on misaligned_2, {what}, {s.finetune_steps} steps",
                [paths.run_dir(ft, steered) / "training_results.json"],
                partial(steps.finetune, paths.run_dir(ft, steered).with_suffix(".json")),
            )
        )
    stages.append(
        Stage(
            f"{ft}: finetuning shift of each run along the {ft} vector (base model {s.model})",
            [paths.shifts],
            partial(steps.finetuning_shifts, s, paths),
        )
    )
    stages.append(
        Stage(
            "steering-by-layer figures (trait score and coherence)",
            [paths.figs / "steering_layer_plots.png", paths.figs / "steering_layer_plots_coherence.png"],
            partial(save_steering_layer_figures, paths.baseline(ft).parent, paths.figs, s.steering_type),
        )
    )
    if len(s.traits) >= 2:
        experiment = Experiment(
            kind="interference",
            spec=eval_spec(s, s.traits[0], "eval", s.interference_questions, extra_traits=s.traits[1:]),
            vectors={t: paths.vector(t) for t in s.traits},
            layer=s.focus_layer,
            steering_type=s.steering_type,
            coef=s.focus_coef,
            output_dir=paths.interference,
        )
        stages.append(
            Stage(
                f"interference: each vector alone (layer {s.focus_layer}, coef {s.focus_coef:g}), every trait judged",
                [paths.interference / "interference_matrix.csv"],
                partial(steps.interference, experiment),
            )
        )
    stages.append(
        Stage(
            f"headline: best cell with coherence >= {COHERENCE_FLOOR:g} per trait, chosen on the selection "
            "questions, measured on the held-out eval questions",
            [paths.headline],
            partial(write_headline, s, paths, judge_column),
        )
    )
    stages.append(Stage("HTML report", [paths.report], partial(write_report, paths.out)))
    return stages


def held_out(s: DemoSettings, paths: DemoPaths, judge_column: Callable[[str], str]) -> dict:
    """Per trait: the best coherent cell chosen on the selection questions, measured on the eval questions."""
    return held_out_headlines(
        {t: selection_files(s, paths, t) for t in s.traits},
        {t: cell_files(s, paths, t) for t in s.traits},
        {t: judge_column(t) for t in s.traits},
    )


def write_headline(s: DemoSettings, paths: DemoPaths, judge_column: Callable[[str], str]) -> None:
    """`headline.csv` (one held-out row per trait) and `cells.csv` (every cell of both question sets)."""
    write_csv(paths.headline, held_out_rows(held_out(s, paths, judge_column)))
    tables = [
        cell_table(files(s, paths, t), judge_column(t)).assign(trait_name=t, question_set=name)
        for t in s.traits
        for name, files in (("selection", selection_files), ("report", cell_files))
    ]
    write_csv(paths.out / "cells.csv", pd.concat(tables))
