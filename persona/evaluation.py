"""The one evaluation recipe: generate (optionally steered) -> answers file -> judge -> CSV + records.

`run_evaluation(spec, jobs)` is what `eval_persona`, `eval.multi_persona`, the job units
(local and Ray) and the demo call. An `EvalSpec` says what decides the rows and scores
(model, traits and questions, sampling and seeds, backend, judge); each `Job` is one `Cell`
(its steers) and the CSV it lands in. All jobs of a call are generated in shared batches.

Resume: a job whose CSV exists is done when its `.settings.json` record matches this run
(otherwise `SettingsMismatch` says what differs); its empty judge cells on non-empty answers
(a judge call that failed) are asked again. Generated answers wait in `<csv>.answers.csv`
while judging, so a kill never costs a regeneration (`persona.answers`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from persona.answers import Job, answers_with_resume, finish_job, generation_fingerprint, split_done
from persona.cells import Cell, Sample, build_samples, generate_cells
from persona.defaults import EMBEDDED_MODEL
from persona.fingerprint import check_finished, model_ref, read_record
from persona.generation import GenerationBackend
from persona.io import read_table
from persona.judge.cache import model_identity
from persona.judge.factory import JudgeSettings, make_judges, resolve_spec
from persona.judge.prompts import COHERENCE
from persona.judge.runner import Judge, score_all
from persona.judge.sidecar import judge_record
from persona.locks import output_lock
from persona.models import LoadedModel, load_model
from persona.sampling import SamplingParams, study_sampling
from persona.steering import Positions, Steer, check_steers
from persona.traits import Trait, load_trait
from persona.vectors import PersonaVector

__all__ = [
    "Cell",
    "EvalRun",
    "EvalSpec",
    "Job",
    "Sample",
    "answers_with_resume",
    "build_samples",
    "finish_job",
    "generate_cells",
    "judge_frame",
    "run_evaluation",
    "split_done",
    "summarize",
    "sweep_filename",
    "sweep_jobs",
    "unsteered_job",
]

log = logging.getLogger(__name__)


@dataclass
class EvalSpec:
    """What decides an evaluation's rows and scores, except the cells' steering.

    `trait` gives the questions and the judged trait; `extra_traits` (multi-persona
    experiments) add their questions, and every answer is judged for every trait. `judge`
    holds the judge settings as given; `resolve_judge` fixes the judge they resolve to and
    its sidecar record once (on a Ray driver, so every worker scores the same way).
    """

    model: str = EMBEDDED_MODEL
    trait: str = ""
    extra_traits: tuple[str, ...] = ()
    version: str = "eval"
    n_per_question: int = 1
    max_questions: int | None = None
    instruction_type: Literal["pos", "neg"] | None = None
    assistant_name: str | None = None
    max_tokens: int = 1000
    temperature: float | None = None
    top_p: float = 1.0
    top_k: int = 0
    min_new_tokens: int = 1
    seeds: tuple[int, ...] = (0,)
    batch_size: int = 16
    backend: str = "auto"
    gpu_memory_utilization: float | None = None
    device: str | None = None
    dtype: str | None = None
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    judge_spec: str | None = None
    judged_by: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, Any] = field(default_factory=dict)  # what the run chose itself (`layer auto`), recorded

    def __post_init__(self) -> None:
        if not self.trait:
            raise ValueError("EvalSpec needs a trait (a name such as evil, or a trait .json path)")
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one sampling seed")

    @property
    def seed(self) -> int | tuple[int, ...]:
        """The seed of a one-seed run (as records always wrote it), else every seed."""
        return self.seeds[0] if len(self.seeds) == 1 else self.seeds

    def load_traits(self) -> list[Trait]:
        """The traits whose questions are asked (each cut to `max_questions`) and whose judges score."""
        traits = []
        for name in (self.trait, *self.extra_traits):
            trait = load_trait(name, version=self.version)  # type: ignore[arg-type]
            if self.max_questions is not None:
                trait.questions = trait.questions[: self.max_questions]
            traits.append(trait)
        return traits

    def samples(self, traits: Sequence[Trait] | None = None) -> list[Sample]:
        return [
            sample
            for trait in traits or self.load_traits()
            for sample in build_samples(
                trait,
                n_per_question=self.n_per_question,
                instruction_type=self.instruction_type,
                assistant_name=self.assistant_name,
            )
        ]

    def sampling(self) -> SamplingParams:
        """Greedy for one sample per question, temperature 1 otherwise, unless `temperature` is given."""
        return study_sampling(
            self.n_per_question,
            self.max_tokens,
            self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_new_tokens=self.min_new_tokens,
        )

    def resolve_judge(self) -> EvalSpec:
        """This spec with the judge that will run and its sidecar record fixed (idempotent)."""
        if self.judge_spec is not None:
            return self
        records = [judge_record(self.judge, trait=t) for t in self.load_traits()]  # paths as the user gave them
        judge = self.judge
        if judge.coherence_prompt:  # workers may run elsewhere
            judge = replace(judge, coherence_prompt=str(Path(judge.coherence_prompt).resolve()))
        return replace(
            self,
            judge=judge,
            judge_spec=resolve_spec(judge.judge_model, judge.judge_base_url),
            judged_by=records[0] if len(records) == 1 else _merged_records(records),
        )

    def judges(self, traits: Sequence[Trait], lm: LoadedModel) -> dict[str, Judge]:
        """{judge column: judge} for every trait, then coherence, with the judge the spec resolved."""
        settings = replace(self.judge, judge_model=self.resolve_judge().judge_spec)
        judges: dict[str, Judge] = {}
        for trait in traits:
            judges.update(
                {k: v for k, v in make_judges(settings, trait=trait, eval_model=lm).items() if k != COHERENCE}
            )
        judges[COHERENCE] = make_judges(settings, trait=traits[0], eval_model=lm)[COHERENCE]
        return judges

    def record(self, cell: Cell, samples: Sequence[Sample] | None = None) -> dict[str, Any]:
        """The settings record written beside a finished CSV (`<csv>.settings.json`); known without the model."""
        model_key = json.dumps(model_ref(self.model), sort_keys=True)
        generation = generation_fingerprint(model_key, samples or self.samples(), self.sampling(), self.seed, cell)
        judged_by = self.resolve_judge().judged_by
        return {**generation, "judge": {k: v for k, v in judged_by.items() if k != "default_judge"}, **self.choices}

    def key(self) -> str:
        """Specs with equal keys share generation batches (`persona.jobs`)."""
        return json.dumps(asdict(self), sort_keys=True, default=str)


def _merged_records(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One sidecar record for answers judged for several traits: every trait's columns."""
    columns: dict[str, Any] = {}
    for record in records:
        columns.update(record["columns"])
    return {**records[0], "trait": [r["trait"] for r in records], "columns": columns}


def judge_frame(df: pd.DataFrame, judges: dict[str, Judge], *, max_concurrent: int) -> pd.DataFrame:
    """Add one score column per judge (trait columns, then coherence); failures stay None."""
    df = df.copy()
    for column, judge in judges.items():
        df[column] = score_all(
            judge,
            df["question"].tolist(),
            df["answer"].tolist(),
            max_concurrent=max_concurrent,
            desc=f"judging {column}",
        )
    return df


def _rejudge_missing(df: pd.DataFrame, judges: dict[str, Judge], *, max_concurrent: int) -> pd.DataFrame:
    """Score again exactly the empty judge cells of non-empty answers (judge calls that failed)."""
    df = df.copy()
    answered = df["answer"].fillna("").astype(str).str.strip() != ""
    for column, judge in judges.items():
        scores = pd.to_numeric(df[column], errors="coerce") if column in df else pd.Series(float("nan"), df.index)
        rows = df.index[scores.isna() & answered]
        if len(rows):
            new = score_all(
                judge,
                df.loc[rows, "question"].tolist(),
                df.loc[rows, "answer"].tolist(),
                max_concurrent=max_concurrent,
                desc=f"judging {column} again",
            )
            scores = scores.astype(object)
            scores.loc[rows] = new
        df[column] = scores
    return df


def _missing_scores(job: Job, columns: Sequence[str]) -> bool:
    """True when the finished CSV has an empty judge cell on a non-empty answer."""
    df = read_table(job.output, required=("answer",))
    answered = df["answer"].fillna("").astype(str).str.strip() != ""
    return any(
        column not in df or bool((pd.to_numeric(df[column], errors="coerce").isna() & answered).any())
        for column in columns
    )


@dataclass
class EvalRun:
    """What `run_evaluation` did: jobs skipped (finished with these settings) and jobs written."""

    skipped: list[Job] = field(default_factory=list)
    written: list[tuple[Job, pd.DataFrame]] = field(default_factory=list)


Finished = Callable[[Job, pd.DataFrame], None]


def run_evaluation(
    spec: EvalSpec,
    jobs: Sequence[Job],
    *,
    overwrite: bool = False,
    lm: LoadedModel | None = None,
    backend: GenerationBackend | None = None,
    on_skipped: Callable[[Job], None] | None = None,
    on_finished: Finished | None = None,
) -> EvalRun:
    """Evaluate every job not finished yet: generate all in shared batches, judge, write CSV + records.

    `lm`/`backend` reuse a loaded model and backend (a worker's); otherwise the model loads
    only when there is work, and the backend is `make_backend(spec.backend)` with its
    logged fallback. `on_skipped(job)` is called for each job found finished with these settings,
    `on_finished(job, scored)` as each CSV lands.
    """
    spec = spec.resolve_judge()
    traits = spec.load_traits()
    samples = spec.samples(traits)
    records = {job.output: spec.record(job.cell, samples) for job in jobs}
    columns = [t.judge_column for t in traits] + [COHERENCE]
    todo, done = split_done(jobs, overwrite)
    run, rejudge = EvalRun(), []
    for job in done:  # a finished CSV made with other settings stops the run: SettingsMismatch says what differs
        check_finished(str(job.output), read_record(job.output), records[job.output])
        if _missing_scores(job, columns):
            rejudge.append(job)
        else:
            run.skipped.append(job)
            if on_skipped is not None:
                on_skipped(job)
    if not todo and not rejudge:
        return run
    with contextlib.ExitStack() as locks:  # one writer per output: a second process is refused, naming the holder
        for job in [*todo, *rejudge]:
            locks.enter_context(output_lock(job.output))
        _evaluate(spec, traits, samples, records, todo, rejudge, run, lm, backend, on_finished)
    return run


def _evaluate(
    spec: EvalSpec,
    traits: Sequence[Trait],
    samples: Sequence[Sample],
    records: dict[Path, dict[str, Any]],
    todo: Sequence[Job],
    rejudge: Sequence[Job],
    run: EvalRun,
    lm: LoadedModel | None,
    backend: GenerationBackend | None,
    on_finished: Finished | None,
) -> None:
    """`run_evaluation`'s work once its outputs are locked: generate the jobs to do, judge, write."""
    from persona.vllm_backend import make_backend

    lm = lm or load_model(spec.model, device=spec.device, dtype=spec.dtype)
    for job in todo:  # a bad vector or layer fails before generating
        check_steers(lm.model, job.cell.steers)
    judges = spec.judges(traits, lm)
    limit = spec.judge.max_concurrent_judges

    def finish(job: Job, scored: pd.DataFrame) -> None:
        finish_job(job, scored, spec.judged_by, records[job.output])
        run.written.append((job, scored))
        if on_finished is not None:
            on_finished(job, scored)

    for job in rejudge:
        log.info("%s has empty judge cells; asking the judge again for exactly those", job.output)
        finish(job, _rejudge_missing(read_table(job.output), judges, max_concurrent=limit))
    if todo:
        if backend is None:
            backend = make_backend(
                spec.backend, lm, batch_size=spec.batch_size, gpu_memory_utilization=spec.gpu_memory_utilization
            )
        frames = answers_with_resume(
            todo, samples, backend, lm.tokenizer, spec.sampling(), spec.seed, model_identity(lm)
        )
        for job, frame in zip(todo, frames, strict=True):
            finish(job, judge_frame(frame, judges, max_concurrent=limit))


def summarize(df: pd.DataFrame, columns: Sequence[str]) -> str:
    """`column: mean +- std (n scored / n)` lines for the printed summary."""
    lines = []
    for column in columns:
        scores = pd.to_numeric(df[column], errors="coerce")
        lines.append(
            f"{column}: {scores.mean():.2f} +- {scores.std():.2f} ({scores.notna().sum()}/{len(scores)} scored)"
        )
    return "\n".join(lines)


def sweep_filename(trait: str, steering_type: str, layer: int, coef: float) -> str:
    return f"{trait}_steer_{steering_type}_layer_{layer}_coef_{float(coef)!r}.csv"


def unsteered_job(output: str | Path) -> Job:
    """The one job of an evaluation without steering (a persona evaluation, a baseline)."""
    return Job(Cell("unsteered"), Path(output))


def sweep_jobs(
    trait_name: str,
    vector: PersonaVector | torch.Tensor,
    layers: Sequence[int],
    coefs: Sequence[float],
    positions: Positions,
    output_dir: Path,
) -> list[Job]:
    """The layer x coefficient grid of one vector, one job per cell named by `sweep_filename`."""
    jobs = []
    for layer, coef in itertools.product(layers, coefs):
        name = sweep_filename(trait_name, positions, layer, coef)
        jobs.append(Job(Cell(name, [Steer(vector, layer, coef, positions)]), output_dir / name))
    return jobs
