"""What the demo's stages call: library functions (and `viz` figures) with typed arguments, plus a short printout.

Each step is the library call a command runs, without its flags: evaluations through
`persona.evaluation.run_evaluation` (what `eval.eval_persona` calls), vectors through
`persona.extraction.extract_and_save` (`generate_vec.py`), finetuning through
`persona.training` (`training.py`), interference through `persona.experiments.run_experiment`
(`eval.multi_persona`). The figures and the report are `viz` functions the plan calls directly.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from persona.analysis.headline import projection_summary
from persona.evaluation import EvalSpec, Job, run_evaluation, summarize, sweep_jobs, unsteered_job
from persona.experiments import Experiment, run_experiment
from persona.extraction import extract_and_save
from persona.io import read_table, write_csv, write_json, write_text
from persona.judge import COHERENCE
from persona.locks import output_lock
from persona.models import load_model
from persona.steering import Positions
from persona.vectors import PersonaVector
from study.demo.paths import DemoPaths
from study.demo.settings import DemoSettings


def _evaluate(spec: EvalSpec, jobs: Sequence[Job]) -> None:
    """Run the jobs; print each CSV's score summary as it lands."""
    columns = [t.judge_column for t in spec.load_traits()] + [COHERENCE]

    def finished(job: Job, scored: pd.DataFrame) -> None:
        print(f"{job.output} ({len(scored)} rows)\n{summarize(scored, columns)}")

    run_evaluation(spec, jobs, on_finished=finished)


def evaluate(spec: EvalSpec, output: Path) -> None:
    """One unsteered evaluation (a persona evaluation or a baseline) into `output`."""
    _evaluate(spec, [unsteered_job(output)])


def evaluate_sweep(
    spec: EvalSpec, *, vector: Path, layers: Sequence[int], coefs: Sequence[float], positions: Positions, out_dir: Path
) -> None:
    """The layer x coef sweep of `vector` (made by an earlier stage, so loaded only now), one packed run."""
    _evaluate(spec, sweep_jobs(spec.trait, PersonaVector.load(vector), layers, coefs, positions, out_dir))


def extract_vectors(model: str, trait: str, pos: Path, neg: Path, save_dir: Path) -> None:
    """The trait's vectors from its pos/neg evaluations, with the library's defaults (mean_diff, threshold 50)."""
    with output_lock(save_dir / f"{trait}_vectors.json"):  # one writer per trait and folder, as generate_vec.py
        result = extract_and_save(pos, neg, trait, save_dir, model=model, load=partial(load_model, model))
    pairs = result.pairs
    print(f"{trait}: kept {pairs.kept}/{pairs.total} pairs" + ("" if result.paths else " (vectors exist; skipped)"))


def project_cells(
    model: str, files: Sequence[Path], vectors: Sequence[str], layers: Sequence[int], batch_size: int, summary: Path
) -> None:
    """Projection columns on every cell's CSV, and the per-cell means in `summary`."""
    from persona.projection import add_projection_columns

    for path in tqdm(files, desc="projecting cells"):
        add_projection_columns(path, vectors, layers, ("proj",), model_name=model, batch_size=batch_size)
    write_csv(summary, projection_summary(files))


def finetune_inputs(s: DemoSettings, paths: DemoPaths, template: Path, dataset_zip: Path) -> None:
    """Copy the trait's misaligned_2 set out of dataset.zip and write the plain and preventative configs."""
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


def finetune(config: Path) -> None:
    """One LoRA run from its JSON config, loaded and validated as `training.py` does."""
    from persona.training.backend import import_unsloth_if_wanted

    import_unsloth_if_wanted()  # before TRL loads (a no-op without CUDA and Unsloth)
    from persona.training.config import load_config
    from persona.training.trainer import train

    cfg = load_config(config)
    results = train(cfg)
    loss = results["train"].get("train_loss", float("nan"))
    print(f"{cfg.output_dir}: {results['global_step']} steps, train loss {loss:.4f}")


def finetuning_shifts(s: DemoSettings, paths: DemoPaths) -> None:
    """Per run: the mean projection of (finetuned - base) activations on the baseline answers."""
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


def interference(experiment: Experiment) -> None:
    """The interference experiment: its cells, tables and figure, and its summary lines."""
    from viz.plot_multi_persona import save_experiment_figure

    result = run_experiment(experiment, on_finished=lambda job, _scored: print(f"{job.output} [{job.cell.name}]"))
    print("\n".join(result.lines))
    save_experiment_figure(result)
