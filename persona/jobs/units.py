"""The study's units of work: an evaluation, a trait's vectors, a checkpoint's evaluation + projections.

A unit is one piece of work with its own output files; a unit whose outputs exist is done,
so every run resumes. Units that share a pack key (model and evaluation settings) run
together on a worker, in shared generation batches (`persona.evaluation.run_evaluation`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pandas as pd

from persona.answers import Job, drop_answers
from persona.evaluation import EvalSpec, run_evaluation
from persona.extraction import extract_and_save, extraction_settings, vectors_done
from persona.fingerprint import check_finished, read_record
from persona.projection import add_projection_columns, column_name

if TYPE_CHECKING:
    from persona.jobs.runners import Worker

Status = Literal["done", "skipped", "failed"]


@dataclass
class UnitResult:
    """What happened to one unit in a run."""

    unit: str
    status: Status
    error: str | None = None


Report = Callable[[UnitResult], None]


class Unit(Protocol):
    name: str

    def is_done(self, since: float | None = None) -> bool: ...

    def pack_key(self) -> str: ...

    def run_pack(self, worker: Worker, units: Sequence[Any], since: float | None, report: Report) -> None:
        """Run `units` (all with this unit's pack key, not done) on `worker`, reporting each."""


def _fresh(path: Path, since: float | None) -> bool:
    """The file exists (and, with `since`, was written after it: `overwrite` redoes older files)."""
    return path.exists() and (since is None or path.stat().st_mtime >= since)


@dataclass
class EvalUnit:
    """One evaluation: a job (its cell's steers and output CSV) under a spec. Sweep cells are these."""

    job: Job
    spec: EvalSpec

    @property
    def name(self) -> str:
        return self.job.output.name

    def is_done(self, since: float | None = None) -> bool:
        """The CSV exists; one made with other settings stops the run (SettingsMismatch), as eval_persona.

        Answers of a finished cell left waiting (a kill just after its CSV) are dropped.
        """
        if not _fresh(self.job.output, since):
            return False
        check_finished(str(self.job.output), read_record(self.job.output), self.spec.record(self.job.cell))
        drop_answers(self.job)
        return True

    def pack_key(self) -> str:
        return "eval:" + self.spec.key()

    def run_pack(self, worker: Worker, units: Sequence[EvalUnit], since: float | None, report: Report) -> None:
        """Every unit of the pack (none done: each output is missing or older than `since`) in one evaluation."""
        spec = self.spec
        by_output = {unit.job.output: unit for unit in units}
        run_evaluation(
            spec,
            [unit.job for unit in units],
            overwrite=True,
            lm=worker.model(spec.model, spec.device, spec.dtype),
            backend=worker.backend(spec),
            on_finished=lambda job, _scored: report(UnitResult(by_output[job.output].name, "done")),
        )


def _run_evals(worker: Worker, units: Sequence[EvalUnit], since: float | None) -> None:
    """Run the evaluations that are not done, one pack per spec."""
    todo = [u for u in units if not u.is_done(since)]
    for key in dict.fromkeys(u.pack_key() for u in todo):
        pack = [u for u in todo if u.pack_key() == key]
        pack[0].run_pack(worker, pack, since, lambda result: None)


@dataclass
class TraitVectorsUnit:
    """A trait's pos and neg persona evaluations, then its persona vectors (generate_vec.py)."""

    trait: str
    pos: EvalUnit
    neg: EvalUnit
    save_dir: Path
    threshold: float = 50

    @property
    def name(self) -> str:
        return f"{self.trait} vectors"

    def settings(self) -> dict[str, Any]:
        """What generate_vec.py records for the vectors (the inputs' contents, filter, model)."""
        pos, neg = self.pos.job.output, self.neg.job.output
        return extraction_settings(pos, neg, self.trait, self.threshold, self.pos.spec.model)

    def is_done(self, since: float | None = None) -> bool:
        """Both evaluations and a complete vector set made from them (other settings: SettingsMismatch)."""
        if not (self.pos.is_done(since) and self.neg.is_done(since)):
            return False
        meta = self.save_dir / f"{self.trait}_vectors.json"
        return _fresh(meta, since) and vectors_done(self.save_dir, self.trait, self.settings())

    def pack_key(self) -> str:
        return "vectors:" + self.pos.spec.model

    def run_pack(self, worker: Worker, units: Sequence[TraitVectorsUnit], since: float | None, report: Report) -> None:
        for unit in units:
            _run_evals(worker, [unit.pos, unit.neg], since)
            spec = unit.pos.spec
            extract_and_save(
                unit.pos.job.output,
                unit.neg.job.output,
                unit.trait,
                unit.save_dir,
                model=spec.model,
                load=partial(worker.model, spec.model, spec.device, spec.dtype),
                threshold=unit.threshold,
                batch_size=spec.batch_size,
                overwrite=True,  # is_done decided already; a changed input must recompute, not stop
            )
            report(UnitResult(unit.name, "done"))


@dataclass
class CheckpointUnit:
    """A checkpoint's evaluation on a trait, then projections of its answers onto the trait's vector
    (and, with a base model, of the finetuning shift) as columns of the same CSV."""

    eval: EvalUnit
    vector_path: str
    layer: int
    projection_types: tuple[str, ...] = ("proj",)
    base_model: str | None = None

    @property
    def name(self) -> str:
        return self.eval.name

    def columns(self) -> list[str]:
        shifts = [False, True] if self.base_model else [False]
        return [
            column_name(self.eval.spec.model, self.vector_path, kind, self.layer, shift)
            for shift in shifts
            for kind in self.projection_types
        ]

    def is_done(self, since: float | None = None) -> bool:
        output = self.eval.job.output
        return _fresh(output, since) and set(self.columns()) <= set(pd.read_csv(output, nrows=0).columns)

    def pack_key(self) -> str:
        return "checkpoint:" + self.eval.spec.model

    def run_pack(self, worker: Worker, units: Sequence[CheckpointUnit], since: float | None, report: Report) -> None:
        for unit in units:
            _run_evals(worker, [unit.eval], since)
            worker.release()  # the projections load the checkpoint (and base) themselves
            spec = unit.eval.spec
            for base in dict.fromkeys([None, unit.base_model]):
                add_projection_columns(
                    unit.eval.job.output,
                    [unit.vector_path],
                    [unit.layer],
                    unit.projection_types,
                    model_name=spec.model,
                    base_model=base,
                    overwrite=since is not None,
                    batch_size=spec.batch_size,
                    device=spec.device,
                    dtype=spec.dtype,
                )
            report(UnitResult(unit.name, "done"))


def sweep_units(jobs: Sequence[Job], spec: EvalSpec) -> list[EvalUnit]:
    """One unit per sweep cell (`persona.evaluation.sweep_jobs`), output paths made absolute for workers."""
    return [EvalUnit(replace(job, output=job.output.resolve()), spec) for job in jobs]
