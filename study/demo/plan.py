"""The demo's stages: each names the files that prove it finished and runs the documented command.

A stage's `command` is the command a researcher would type (printed before it runs); the
runner calls that command's `main(argv)` in this process, so what is printed is what runs.
In-library steps (summaries, configs, the headline) are `action`s.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from persona.analysis.headline import COHERENCE_FLOOR, cell_table, held_out_headlines, held_out_rows, projection_summary
from persona.io import read_table, write_csv, write_json, write_text
from study.demo.paths import DemoPaths, cell_files, selection_files
from study.demo.settings import DemoSettings


@dataclass
class Stage:
    """One step of the plan: a banner title, the files that prove it finished, and how to run it.

    `command` is the CLI a user would type (`["python", "-m", "eval.eval_persona", ...]` or
    `["python", "generate_vec.py", ...]`); `action` is an in-library step (summaries, configs).
    """

    title: str
    outputs: list[Path]
    command: list[str] = field(default_factory=list)
    action: Callable[[], None] | None = None

    def done(self) -> bool:
        return bool(self.outputs) and all(p.exists() for p in self.outputs)


def _eval_args(s: DemoSettings, samples: int = 1) -> list[str]:
    """Model, judge and generation flags; one greedy answer per question unless `samples` > 1."""
    judge = ["--judge_model", s.judge] if s.judge else []
    return [
        "--model",
        s.model,
        "--n_per_question",
        str(samples),
        "--max_tokens",
        str(s.max_tokens),
        "--batch_size",
        str(s.batch_size),
        *judge,
    ]


def _eval_command(s: DemoSettings, trait: str, *rest: str, samples: int = 1) -> list[str]:
    return ["python", "-m", "eval.eval_persona", "--trait", trait, *rest, *_eval_args(s, samples)]


def _fmt(values: Sequence[object]) -> list[str]:
    return [f"{v:g}" if isinstance(v, float) else str(v) for v in values]


def _cell_stages(s: DemoSettings, paths: DemoPaths, t: str, version: str, n: int, role: str) -> list[Stage]:
    """The unsteered baseline and the steering sweep of a trait on one question set (eval or extract)."""
    held_out = version == "eval"
    baseline = paths.baseline(t) if held_out else paths.selection_baseline(t)
    sweep = paths.sweep if held_out else paths.selection_sweep
    cells = [sweep(t, layer, coef) for layer in s.layers for coef in s.coefs]
    questions = ["--version", version, "--max_questions", str(n)]
    steering = ["--vector_path", str(paths.vector(t)), "--layer", *_fmt(s.layers), "--coef", *_fmt(s.coefs)]
    return [
        Stage(
            f"{t}: unsteered baseline ({n} {role})",
            [baseline],
            _eval_command(s, t, *questions, "--output_path", str(baseline)),
        ),
        Stage(
            f"{t}: steering sweep, layers {' '.join(_fmt(s.layers))} x coefs {' '.join(_fmt(s.coefs))} "
            f"({n} {role}; one in-process sweep)",
            cells,
            _eval_command(
                s, t, *questions, *steering, "--steering_type", s.steering_type, "--output_dir", str(baseline.parent)
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
            stages.append(
                Stage(
                    f"{t}: {kind} persona evaluation ({s.extract_questions} extract questions x 5 {kind} prompts "
                    f"x {s.extract_samples} {'samples' if s.extract_samples > 1 else 'greedy answer'})",
                    [paths.extract(t, kind)],
                    _eval_command(
                        s,
                        t,
                        "--version",
                        "extract",
                        "--max_questions",
                        str(s.extract_questions),
                        "--persona_instruction_type",
                        kind,
                        "--output_path",
                        str(paths.extract(t, kind)),
                        samples=s.extract_samples,
                    ),
                )
            )
        stages.append(
            Stage(
                f"{t}: persona vector extraction (pos - neg mean activations)",
                [paths.vector(t)],
                [
                    "python",
                    "generate_vec.py",
                    "--model_name",
                    s.model,
                    "--trait",
                    t,
                    "--pos_path",
                    str(paths.extract(t, "pos")),
                    "--neg_path",
                    str(paths.extract(t, "neg")),
                    "--save_dir",
                    str(paths.vector(t).parent),
                ],
            )
        )
    for t in s.traits:
        stages += _cell_stages(s, paths, t, "eval", s.eval_questions, "held-out eval questions: these measure")
        stages += _cell_stages(s, paths, t, "extract", s.selection_questions, "selection questions: these choose")
    vectors = [str(paths.vector(t)) for t in s.traits]
    for t in s.traits:
        files = cell_files(s, paths, t)
        stages.append(
            Stage(
                f"{t}: projection of baseline and steered answers onto {', '.join(s.traits)} vectors "
                f"(python -m eval.cal_projection, layers {' '.join(_fmt(s.layers))})",
                [paths.projections(t)],
                action=_project(s, files, vectors, paths.projections(t)),
            )
        )
    ft = s.finetune_trait
    stages.append(
        Stage(
            f"{ft}: finetuning data (dataset.zip: {ft}/misaligned_2) and two LoRA configs",
            [paths.finetune_data(ft)] + [paths.run_dir(ft, steered).with_suffix(".json") for steered in (False, True)],
            action=_finetune_inputs(s, paths, training_template, dataset_zip),
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
                ["python", "training.py", str(paths.run_dir(ft, steered).with_suffix(".json"))],
            )
        )
    stages.append(
        Stage(
            f"{ft}: finetuning shift of each run along the {ft} vector "
            f"(python -m eval.cal_projection --base_model {s.model})",
            [paths.shifts],
            action=_finetuning_shifts(s, paths),
        )
    )
    stages.append(
        Stage(
            "steering-by-layer figures (trait score and coherence)",
            [paths.figs / "steering_layer_plots.png", paths.figs / "steering_layer_plots_coherence.png"],
            [
                "python",
                "-m",
                "viz.plot_best_steering_layer",
                "--data_dir",
                str(paths.baseline(ft).parent),
                "--steering_type",
                s.steering_type,
                "--output_dir",
                str(paths.figs),
            ],
        )
    )
    if len(s.traits) >= 2:
        stages.append(
            Stage(
                f"interference: each vector alone (layer {s.focus_layer}, coef {s.focus_coef:g}), every trait judged",
                [paths.interference / "interference_matrix.csv"],
                [
                    "python",
                    "-m",
                    "eval.multi_persona",
                    "interference",
                    "--traits",
                    *s.traits,
                    "--vector_path",
                    *vectors,
                    "--layer",
                    str(s.focus_layer),
                    "--coef",
                    f"{s.focus_coef:g}",
                    "--steering_type",
                    s.steering_type,
                    "--max_questions",
                    str(s.interference_questions),
                    "--output_dir",
                    str(paths.interference),
                    *_eval_args(s),
                ],
            )
        )
    stages.append(
        Stage(
            f"headline: best cell with coherence >= {COHERENCE_FLOOR:g} per trait, chosen on the selection "
            "questions, measured on the held-out eval questions",
            [paths.headline],
            action=lambda: write_headline(s, paths, judge_column),
        )
    )
    stages.append(Stage("HTML report", [paths.report], ["python", "-m", "viz.report", str(paths.out)]))
    return stages


def _project(s: DemoSettings, files: Sequence[Path], vectors: Sequence[str], summary: Path) -> Callable[[], None]:
    def run() -> None:
        from persona.projection import add_projection_columns

        for path in tqdm(files, desc="projecting cells"):
            add_projection_columns(path, vectors, s.layers, ("proj",), model_name=s.model, batch_size=s.batch_size)
        write_csv(summary, projection_summary(files))

    return run


def _finetune_inputs(s: DemoSettings, paths: DemoPaths, template: Path, dataset_zip: Path) -> Callable[[], None]:
    """Copy the trait's misaligned_2 set out of dataset.zip and write the plain and preventative configs."""

    def run() -> None:
        ft = s.finetune_trait
        member = f"dataset/{ft}/misaligned_2.jsonl"
        if Path(member).exists():
            text = Path(member).read_text(encoding="utf-8")
        else:
            with zipfile.ZipFile(dataset_zip) as archive:
                if member not in archive.namelist():
                    have = sorted({n.split("/")[1] for n in archive.namelist() if n.endswith("misaligned_2.jsonl")})
                    raise ValueError(f"{dataset_zip} has no {member}: set DEMO_FINETUNE_TRAIT to one of {have}")
                text = archive.read(member).decode("utf-8")
        write_text(paths.finetune_data(ft), text)
        base = json.loads(template.read_text(encoding="utf-8"))
        for steered in (False, True):
            steering = {
                "steering_vector_path": str(paths.vector(ft)),
                "type": "steer",
                "steering_coef": s.focus_coef,
                "layers": [s.focus_layer],
            }
            write_json(
                paths.run_dir(ft, steered).with_suffix(".json"),
                {
                    **base,
                    "model": s.model,
                    "training_file": str(paths.finetune_data(ft)),
                    "output_dir": str(paths.run_dir(ft, steered)),
                    "max_steps": s.finetune_steps,
                    "save_steps": s.finetune_steps,
                    "enable_steering_during_training": steered,
                    "steering_config": steering if steered else None,
                },
            )

    return run


def _finetuning_shifts(s: DemoSettings, paths: DemoPaths) -> Callable[[], None]:
    """Per run: the mean projection of (finetuned - base) activations on the baseline answers."""

    def run() -> None:
        from persona.projection import add_projection_columns, column_name

        ft, vector = s.finetune_trait, str(paths.vector(s.finetune_trait))
        rows = []
        for steered in (False, True):
            run_dir, data = paths.run_dir(ft, steered), paths.shift_file(ft, steered)
            if not data.exists():
                shutil.copyfile(paths.baseline(ft), data)
            add_projection_columns(
                data,
                [vector],
                [s.focus_layer],
                ("proj",),
                model_name=str(run_dir),
                base_model=s.model,
                batch_size=s.batch_size,
            )
            shift = pd.to_numeric(
                read_table(data)[column_name(str(run_dir), vector, "proj", s.focus_layer, shift=True)], errors="coerce"
            )
            rows.append(
                {
                    "run": run_dir.name,
                    "preventative_steering": steered,
                    "vector": ft,
                    "layer": s.focus_layer,
                    "mean_shift": shift.mean(),
                    "n": int(shift.notna().sum()),
                }
            )
        write_csv(paths.shifts, pd.DataFrame(rows))

    return run


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
