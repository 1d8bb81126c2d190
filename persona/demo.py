"""The demo study behind `make demo`: its settings, its stages and its honest headline.

The demo is a small persona study on one machine: for each trait, pos/neg persona
evaluations, vector extraction, a steering sweep plus the unsteered baseline, projections,
then a short LoRA finetune with and without preventative steering, figures and a report.
Each stage is the documented command a researcher would type (printed before it runs) and
names the files it produces, so a rerun skips finished stages.

The headline is the part that must not flatter: a steered cell counts as a result only
when its mean coherence is at least `COHERENCE_FLOOR`; louder but incoherent cells are
listed as such, never as wins (a 135M model pushed hard writes loops that a trait judge
may still score high).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import runpy
import shlex
import shutil
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from persona.analysis.headline import COHERENCE_FLOOR, cell_table, headline_rows, projection_summary, summary_text
from persona.evaluation import sweep_filename
from persona.io import read_table, write_csv, write_json, write_text
from persona.steering import POSITIONS

VECTOR_KIND = "response_avg"


@dataclass(frozen=True)
class DemoSettings:
    """Every knob of the demo, in one place. Each field `x` is overridden by `DEMO_X` in the environment.

    The defaults are sized for the embedded model on a 2-core CPU (see the README for the
    measured time); `DEMO_MODEL`/`DEMO_JUDGE` (`make demo MODEL=... JUDGE=...`) run the same
    study on a real model and judge, where larger question counts and deeper layers make sense.
    """

    model: str = "smollm2-135m"
    judge: str = ""  # empty: the library default (OpenAI if a key is set, else likelihood)
    # Chosen by measurement (README, "Why these settings"): SmolLM2-135M already answers
    # optimistically, and its steered answers lean recognisably evil or pessimistic only with
    # a vector from enough judge-filtered pairs and with every position steered.
    traits: tuple[str, ...] = ("evil", "pessimistic")
    extract_questions: int = 5  # x 5 instructions x extract_samples, for pos and for neg
    extract_samples: int = 2  # sampled answers (temperature 1) per question and instruction
    eval_questions: int = 5
    max_tokens: int = 48
    steering_type: str = "all"  # response-only steering moved no trait readably on the 135M model
    layers: tuple[int, ...] = (6, 8, 10)
    # |v[10]| is about 7, the residual norm there about 130: coef 3 already drives many evil
    # answers into loops, which the headline must then show as incoherent (4 broke most).
    coefs: tuple[float, ...] = (2.0, 2.5, 3.0)
    focus_layer: int = 10  # preventative steering, finetuning shift, interference
    focus_coef: float = 3.0  # preventative steering and interference coefficient
    interference_questions: int = 2  # eval questions per trait in the interference experiment
    finetune_trait: str = "evil"  # needs dataset.zip's dataset/<trait>/misaligned_2.jsonl
    finetune_steps: int = 4
    batch_size: int = 64
    out: str = "output/demo"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DemoSettings:
        """Defaults overridden by `DEMO_<FIELD>` variables; lists are comma- or space-separated."""
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"DEMO_{f.name.upper()}", "").strip()
            if not raw:
                continue
            default = getattr(cls, f.name)
            try:
                if isinstance(default, tuple):
                    cast = (
                        float
                        if default and isinstance(default[0], float)
                        else int
                        if default and isinstance(default[0], int)
                        else str
                    )
                    values[f.name] = tuple(cast(v) for v in raw.replace(",", " ").split())
                else:
                    values[f.name] = type(default)(raw)
            except ValueError:
                raise ValueError(
                    f"DEMO_{f.name.upper()}={raw!r}: expected {type(default).__name__} like {default!r}"
                ) from None
        settings = cls(**values)  # type: ignore[arg-type]
        if not settings.traits:
            raise ValueError("DEMO_TRAITS is empty: name at least one trait, e.g. DEMO_TRAITS=evil")
        if settings.steering_type not in POSITIONS:
            raise ValueError(f"DEMO_STEERING_TYPE={settings.steering_type!r}: expected one of {', '.join(POSITIONS)}")
        return settings

    def record(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def check_settings_record(out: Path, settings: DemoSettings) -> None:
    """Write `out/settings.json`, or refuse when `out` holds a run made with other settings.

    Stages skip outputs that exist, so mixing settings in one folder would mix results.
    """
    path = out / "settings.json"
    want = settings.record()
    if path.exists():
        have = json.loads(path.read_text(encoding="utf-8"))
        diff = [f"{k}: {have.get(k)!r} -> {v!r}" for k, v in want.items() if k != "out" and have.get(k) != v]
        if diff:
            raise ValueError(
                f"{out} holds a demo run made with other settings ({'; '.join(diff)}); "
                f"delete {out} or set DEMO_OUT to another folder"
            )
    write_json(path, want)


@dataclass
class Stage:
    """One step of the plan: a banner title, the files that prove it finished, and how to run it.

    `command` is the CLI a user would type (`["python", "-m", "eval.eval_persona", ...]` or
    `["python", "generate_vec.py", ...]`); `action` is an in-library step (summaries, configs).
    `needs` names a module that must be importable (figures and report from the research layer).
    """

    title: str
    outputs: list[Path]
    command: list[str] = field(default_factory=list)
    action: Callable[[], None] | None = None
    needs: str | None = None

    def done(self) -> bool:
        return bool(self.outputs) and all(p.exists() for p in self.outputs)


@dataclass(frozen=True)
class DemoPaths:
    """Where every artifact of a demo run lives (all under `out`); sweep cells are named by `steering_type`."""

    out: Path
    steering_type: str

    @classmethod
    def of(cls, s: DemoSettings) -> DemoPaths:
        """The paths of a run with settings `s` (so file names always match the commands' settings)."""
        return cls(Path(s.out), s.steering_type)

    @property
    def figs(self) -> Path:
        return self.out / "figs"

    def extract(self, trait: str, kind: str) -> Path:
        return self.out / "extract" / f"{trait}_{kind}_instruct.csv"

    def vector(self, trait: str) -> Path:
        return self.out / "vectors" / f"{trait}_{VECTOR_KIND}_diff.pt"

    def baseline(self, trait: str) -> Path:
        return self.out / "steering" / f"{trait}_baseline.csv"

    def sweep(self, trait: str, layer: int, coef: float) -> Path:
        return self.out / "steering" / sweep_filename(trait, self.steering_type, layer, coef)

    def projections(self, trait: str) -> Path:
        return self.out / "projection" / f"{trait}_projections.csv"

    def finetune_data(self, trait: str) -> Path:
        return self.out / "finetune" / "data" / f"{trait}_misaligned_2.jsonl"

    def run_dir(self, trait: str, steered: bool) -> Path:
        return self.out / "finetune" / f"{trait}_{'steer' if steered else 'plain'}"

    def shift_file(self, trait: str, steered: bool) -> Path:
        return self.out / "finetune" / f"{self.run_dir(trait, steered).name}_shift.csv"

    @property
    def shifts(self) -> Path:
        return self.out / "finetune" / "finetuning_shift.csv"

    @property
    def interference(self) -> Path:
        return self.out / "interference"

    @property
    def headline(self) -> Path:
        return self.out / "headline.csv"

    @property
    def report(self) -> Path:
        return self.out / "report.html"


# --- the plan -------------------------------------------------------------------------------------


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
        stages.append(
            Stage(
                f"{t}: unsteered baseline ({s.eval_questions} eval questions)",
                [paths.baseline(t)],
                _eval_command(
                    s,
                    t,
                    "--version",
                    "eval",
                    "--max_questions",
                    str(s.eval_questions),
                    "--output_path",
                    str(paths.baseline(t)),
                ),
            )
        )
        cells = [paths.sweep(t, layer, coef) for layer in s.layers for coef in s.coefs]
        stages.append(
            Stage(
                f"{t}: steering sweep, layers {' '.join(_fmt(s.layers))} x coefs {' '.join(_fmt(s.coefs))} "
                "(one in-process sweep)",
                cells,
                _eval_command(
                    s,
                    t,
                    "--version",
                    "eval",
                    "--max_questions",
                    str(s.eval_questions),
                    "--vector_path",
                    str(paths.vector(t)),
                    "--layer",
                    *_fmt(s.layers),
                    "--coef",
                    *_fmt(s.coefs),
                    "--steering_type",
                    s.steering_type,
                    "--output_dir",
                    str(paths.baseline(t).parent),
                ),
            )
        )
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
            needs="viz.plot_best_steering_layer",
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
                needs="eval.multi_persona",
            )
        )
    stages.append(
        Stage(
            f"headline: best cell with coherence >= {COHERENCE_FLOOR:g} per trait",
            [paths.headline],
            action=lambda: write_headline(s, paths, judge_column),
        )
    )
    stages.append(
        Stage("HTML report", [paths.report], ["python", "-m", "viz.report", str(paths.out)], needs="viz.report")
    )
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


def cell_files(s: DemoSettings, paths: DemoPaths, trait: str) -> list[Path]:
    """The baseline and every sweep cell of a trait, in plan order."""
    return [paths.baseline(trait)] + [paths.sweep(trait, layer, coef) for layer in s.layers for coef in s.coefs]


def trait_tables(s: DemoSettings, paths: DemoPaths, judge_column: Callable[[str], str]) -> dict[str, pd.DataFrame]:
    return {t: cell_table(cell_files(s, paths, t), judge_column(t)) for t in s.traits}


def write_headline(s: DemoSettings, paths: DemoPaths, judge_column: Callable[[str], str]) -> None:
    """`headline.csv` (one row per trait) and `cells.csv` (every cell with its coherence flag)."""
    tables = trait_tables(s, paths, judge_column)
    write_csv(paths.headline, headline_rows(tables))
    write_csv(paths.out / "cells.csv", pd.concat([t.assign(trait_name=name) for name, t in tables.items()]))


# --- running it -----------------------------------------------------------------------------------


class StageFailed(RuntimeError):
    """A stage's command exited with an error (its own message is already on stderr)."""


def run_command(command: Sequence[str]) -> None:
    """Run `python -m module ...` or `python script.py ...` in this process (no interpreter start-up)."""
    if command[0] != "python":
        raise ValueError(f"not a python command: {command}")
    by_module = command[1] == "-m"
    target, args = (command[2], command[3:]) if by_module else (command[1], command[2:])
    saved = sys.argv
    sys.argv = [target, *args]
    try:
        if by_module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise StageFailed(f"`{shlex.join(command)}` exited with status {stop.code}") from None
    finally:
        sys.argv = saved


def module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def run_plan(stages: Sequence[Stage]) -> list[str]:
    """Run every unfinished stage with a banner; return the notes of skipped (unavailable) stages."""
    skipped = []
    for i, stage in enumerate(stages, 1):
        print(f"\n=== [{i}/{len(stages)}] {stage.title} ===", flush=True)
        if stage.needs and not module_available(stage.needs):
            note = f"skipped: {stage.needs} is not in this checkout (it comes with the research layer, issue 12)"
            print(note)
            skipped.append(f"{stage.title}: {note}")
            continue
        if stage.done():
            shown = ", ".join(str(p) for p in stage.outputs[:2]) + (" ..." if len(stage.outputs) > 2 else "")
            print(f"done already ({shown}); skipping")
            continue
        if stage.command:
            print("$ " + shlex.join(stage.command), flush=True)
            run_command(stage.command)
        if stage.action:
            stage.action()
        missing = [str(p) for p in stage.outputs if not p.exists()]
        if missing:
            raise StageFailed(f"stage '{stage.title}' finished without writing {missing}")
    return skipped


def closing_lines(s: DemoSettings, paths: DemoPaths, headline: pd.DataFrame, skipped: Sequence[str]) -> str:
    """The last lines of a demo run: where the report is, and the key numbers."""
    lines = [f"\nall files: {paths.out}/"]
    lines += [f"not run: {note}" for note in skipped]
    if paths.shifts.exists():
        shifts = read_table(paths.shifts)
        lines.append(
            f"finetuning shift along {s.finetune_trait} (layer {s.focus_layer}): "
            + ", ".join(f"{r.run} {r.mean_shift:+.3f}" for r in shifts.itertuples())
        )
    for r in headline.itertuples():
        best = (
            f"no steered cell kept coherence >= {COHERENCE_FLOOR:g}"
            if pd.isna(r.best_layer)
            else f"best coherent cell layer {int(r.best_layer)} coef {r.best_coef:g}: {r.best_trait:.1f} "
            f"(coherence {r.best_coherence:.1f})"
        )
        lines.append(
            f"{r.trait}: baseline {r.baseline_trait:.1f} (coherence {r.baseline_coherence:.1f}); {best}; "
            f"{r.cells_below_floor}/{r.cells} cells below the coherence floor"
        )
    lines.append(f"report: {paths.report}" if paths.report.exists() else "report: not written (viz.report missing)")
    return "\n".join(lines)


def run_demo(s: DemoSettings) -> None:
    """The whole study: every unfinished stage, then the honest headline and the closing lines."""
    from persona.traits import load_trait

    columns = {t: load_trait(t).judge_column for t in s.traits}  # unknown trait names fail here, before any work
    paths = DemoPaths.of(s)
    check_settings_record(paths.out, s)
    skipped = run_plan(plan(s, paths, judge_column=columns.__getitem__))
    tables = trait_tables(s, paths, columns.__getitem__)
    print("\n" + summary_text(tables, columns, s.judge))
    print(closing_lines(s, paths, headline_rows(tables), skipped))
