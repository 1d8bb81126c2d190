"""The study's grids as independent units, run in-process or on a Ray cluster.

A unit is one piece of work with its own output files: a steering-sweep cell (trait x
layer x coefficient), a trait's pos/neg evaluation + vector extraction, or a checkpoint's
evaluation + projections. A unit whose outputs exist is done, so every run resumes.

A `Worker` loads a model once and runs a list of units, packing those that share a model
and evaluation settings into shared generation batches (as `eval_persona` packs a sweep).
`LocalRunner` hands every unit to one in-process worker; `RayRunner` starts one worker
actor per GPU (per CPU on a CPU-only cluster) and feeds them tasks of a few units each.
Workers write results themselves, atomically, to the paths the driver planned, so a
cluster needs a filesystem shared by the nodes (or the same path on each node, gathered
afterwards). A worker that dies loses only its task in flight: the driver starts a new
worker and resubmits that task, whose units already written are skipped.

Ray is imported only by `RayRunner`, so local runs do not need it.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd
import torch
from tqdm.auto import tqdm

from persona.cli import judge_settings
from persona.evaluation import (
    Job,
    Sample,
    answers_with_resume,
    build_samples,
    drop_answers,
    finish_job,
    generation_fingerprint,
    judge_frame,
)
from persona.extraction import extract_and_save, extraction_settings, vectors_done
from persona.fingerprint import check_finished, model_ref, read_record
from persona.generation import GenerationBackend
from persona.judge.cache import model_identity
from persona.judge.factory import JudgeSettings, make_judges, resolve_spec
from persona.judge.runner import Judge
from persona.judge.sidecar import judge_record
from persona.models import LoadedModel, load_model
from persona.projection import add_projection_columns, column_name
from persona.sampling import SamplingParams, study_sampling
from persona.steering import check_steers
from persona.traits import Trait, load_trait
from persona.vllm_backend import make_backend

log = logging.getLogger(__name__)

Status = Literal["done", "skipped", "failed"]
# Units per Ray task: enough rows to share generation batches, few enough that a dead worker loses little.
UNITS_PER_TASK = 4
MAX_ATTEMPTS = 3
# Settings forwarded to workers of a cluster this process starts or joins (never secrets such as API keys).
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "PERSONA_CACHE", "PERSONA_DOTENV", "TOKENIZERS_PARALLELISM")


@dataclass
class EvalSpec:
    """What decides an evaluation's rows and scores, except steering: eval_persona's flags.

    `judge` holds the judge settings as given, `judge_spec` the judge they resolve to on the driver
    and `judged_by` the sidecar record made there, so every worker scores (and says it scored)
    the same way whatever its own environment.
    """

    model: str
    trait: str
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
    seed: int = 0
    batch_size: int = 16
    backend: str = "auto"
    gpu_memory_utilization: float | None = None
    device: str | None = None
    dtype: str | None = None
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    judge_spec: str = "likelihood"
    judged_by: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: Any) -> EvalSpec:
        """The spec of parsed eval_persona-style flags (`overrides` replace any field)."""
        values = {
            "model": args.model,
            "trait": args.trait,
            "version": args.version,
            "n_per_question": args.n_per_question,
            "max_questions": args.max_questions,
            "instruction_type": args.persona_instruction_type,
            "assistant_name": args.assistant_name,
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "top_p": getattr(args, "top_p", 1.0),  # eval.grid has no sampling flags beyond temperature
            "top_k": getattr(args, "top_k", 0),
            "min_new_tokens": getattr(args, "min_new_tokens", 1),
            "seed": args.seed,
            "batch_size": args.batch_size,
            "backend": args.backend,
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "device": args.device,
            "dtype": args.dtype,
        }
        values.update(overrides)
        judge = judge_settings(args)
        if judge.coherence_prompt:  # workers may run elsewhere
            judge = replace(judge, coherence_prompt=str(Path(judge.coherence_prompt).resolve()))
        spec = cls(**values, judge=judge, judge_spec=resolve_spec(judge.judge_model, judge.judge_base_url))
        spec.judged_by = judge_record(judge, trait=spec.load_trait())
        return spec

    def judges(self, trait: Trait, lm: LoadedModel) -> dict[str, Judge]:
        """The trait and coherence judges, with the judge the driver resolved."""
        return make_judges(replace(self.judge, judge_model=self.judge_spec), trait=trait, eval_model=lm)

    def load_trait(self) -> Trait:
        trait = load_trait(self.trait, version=self.version)  # type: ignore[arg-type]
        if self.max_questions is not None:
            trait.questions = trait.questions[: self.max_questions]
        return trait

    def samples(self, trait: Trait | None = None) -> list[Sample]:
        trait = trait or self.load_trait()
        return build_samples(
            trait,
            n_per_question=self.n_per_question,
            instruction_type=self.instruction_type,
            assistant_name=self.assistant_name,
        )

    def sampling(self) -> SamplingParams:
        """Greedy for one sample per question, temperature 1 otherwise (as eval_persona)."""
        return study_sampling(
            self.n_per_question,
            self.max_tokens,
            self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_new_tokens=self.min_new_tokens,
        )

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


@dataclass
class Outcome:
    unit: str
    status: Status
    error: str | None = None


@dataclass
class TaskResult:
    """A worker's report on one task: per-unit outcomes and where its time went."""

    outcomes: list[Outcome]
    load_s: float = 0.0
    work_s: float = 0.0


Report = Callable[[Outcome], None]


class Unit(Protocol):
    name: str

    def is_done(self, since: float | None = None) -> bool: ...

    def pack_key(self) -> str: ...

    def run_pack(self, worker: Worker, units: Sequence[Any], since: float | None, report: Report) -> None:
        """Run `units` (all with this unit's pack key, not done) on `worker`, reporting each."""


def _fresh(path: Path, since: float | None) -> bool:
    """The file exists (and, with `since`, was written after it: --overwrite redoes older files)."""
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
        check_finished(str(self.job.output), read_record(self.job.output), self.made_with())
        drop_answers(self.job)
        return True

    def pack_key(self) -> str:
        return "eval:" + self.spec.key()

    def made_with(self, samples: Sequence[Sample] | None = None) -> dict[str, Any]:
        """The settings record eval_persona writes next to a finished CSV (`<csv>.settings.json`)."""
        spec = self.spec
        model_key = json.dumps(model_ref(spec.model), sort_keys=True)
        generation = generation_fingerprint(
            model_key, samples or spec.samples(), spec.sampling(), spec.seed, self.job.cell
        )
        return {**generation, "judge": {k: v for k, v in spec.judged_by.items() if k != "default_judge"}}

    def run_pack(self, worker: Worker, units: Sequence[EvalUnit], since: float | None, report: Report) -> None:
        spec = self.spec
        lm = worker.model(spec.model, spec.device, spec.dtype)
        trait = spec.load_trait()
        for unit in units:  # a bad vector or layer fails before generating
            check_steers(lm.model, unit.job.cell.steers)
        samples = spec.samples(trait)
        jobs = [unit.job for unit in units]
        frames = answers_with_resume(
            jobs, samples, worker.backend(spec), lm.tokenizer, spec.sampling(), spec.seed, model_identity(lm)
        )
        judges = spec.judges(trait, lm)
        for unit, frame in zip(units, frames):
            scored = judge_frame(frame, judges, max_concurrent=spec.judge.max_concurrent_judges)
            finish_job(unit.job, scored, spec.judged_by, unit.made_with(samples))
            report(Outcome(unit.name, "done"))


def _run_evals(worker: Worker, units: Sequence[EvalUnit], since: float | None) -> None:
    """Run the evaluations that are not done, one pack per spec."""
    todo = [u for u in units if not u.is_done(since)]
    for key in dict.fromkeys(u.pack_key() for u in todo):
        pack = [u for u in todo if u.pack_key() == key]
        pack[0].run_pack(worker, pack, since, lambda outcome: None)


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
            report(Outcome(unit.name, "done"))


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
            report(Outcome(unit.name, "done"))


class Worker:
    """Runs units with one model in memory at a time; in-process, or as a Ray actor (one per GPU)."""

    def __init__(self) -> None:
        self._model: tuple[tuple[str, str | None, str | None], LoadedModel] | None = None
        self._backend: tuple[tuple[Any, ...], GenerationBackend] | None = None
        self._load_s = 0.0

    def ready(self) -> int:
        """The worker's process id, once it has started (the driver waits for this before timing)."""
        return os.getpid()

    def model(self, name: str, device: str | None, dtype: str | None) -> LoadedModel:
        """The model, loaded once per worker for as long as consecutive units use it."""
        key = (name, device, dtype)
        if self._model is None or self._model[0] != key:
            self.release()
            start = time.perf_counter()
            self._model = (key, load_model(name, device=device, dtype=dtype))
            self._load_s += time.perf_counter() - start
        return self._model[1]

    def backend(self, spec: EvalSpec) -> GenerationBackend:
        """The generation backend of `spec` on its model, kept with the model (a vLLM engine starts once)."""
        lm = self.model(spec.model, spec.device, spec.dtype)
        key = (id(lm), spec.backend, spec.batch_size, spec.gpu_memory_utilization)
        if self._backend is None or self._backend[0] != key:
            self._backend = None
            start = time.perf_counter()
            backend = make_backend(
                spec.backend, lm, batch_size=spec.batch_size, gpu_memory_utilization=spec.gpu_memory_utilization
            )
            self._backend = (key, backend)
            self._load_s += time.perf_counter() - start
        return self._backend[1]

    def release(self) -> None:
        """Drop the loaded model (and its backend) and return their accelerator memory."""
        self._model = self._backend = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def run(self, units: Sequence[Unit], since: float | None = None, report: Report | None = None) -> TaskResult:
        """Run the units not done yet, packed by key; a failing pack fails its units, not the task."""
        start, self._load_s = time.perf_counter(), 0.0
        outcomes: list[Outcome] = []

        def record(outcome: Outcome) -> None:
            outcomes.append(outcome)
            if report is not None:
                report(outcome)

        todo = []
        for unit in units:
            if unit.is_done(since):
                record(Outcome(unit.name, "skipped"))
            else:
                todo.append(unit)
        for key in dict.fromkeys(unit.pack_key() for unit in todo):
            pack = [unit for unit in todo if unit.pack_key() == key]
            reported = len(outcomes)
            try:
                pack[0].run_pack(self, pack, since, record)
            except Exception as err:  # the error is the unit's result; the other packs still run
                log.exception("units failed: %s", ", ".join(unit.name for unit in pack))
                finished = {o.unit for o in outcomes[reported:]}
                for unit in pack:
                    if unit.name not in finished:
                        record(Outcome(unit.name, "failed", f"{type(err).__name__}: {err}"))
        total = time.perf_counter() - start
        return TaskResult(outcomes, load_s=self._load_s, work_s=total - self._load_s)


@dataclass
class Summary:
    """How a run went: units done, skipped (outputs existed) and failed, and where the time went."""

    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    retried: int = 0
    tasks: int = 0
    wall_s: float = 0.0
    startup_s: float = 0.0
    load_s: float = 0.0
    work_s: float = 0.0
    overhead_s: float = 0.0

    def report(self) -> str:
        """The summary line, then one line per failed unit."""
        text = f"units: {self.done} done, {self.skipped} skipped, {len(self.failed)} failed"
        text += f" ({self.retried} rerun after a worker died)" if self.retried else ""
        return "\n".join([text, *(f"failed: {unit}: {error}" for unit, error in self.failed.items())])

    def add(self, outcomes: Sequence[Outcome]) -> None:
        """Count a task's outcomes; a unit a worker found written (by a worker that died) counts as done."""
        for outcome in outcomes:
            if outcome.status == "failed":
                self.failed[outcome.unit] = outcome.error or "failed"
            else:
                self.done += 1


def plan(units: Sequence[Unit], overwrite: bool = False) -> tuple[list[Unit], int, float | None]:
    """(units to run, how many are done already, the `since` time that --overwrite judges outputs by)."""
    since = time.time() if overwrite else None
    todo = [unit for unit in units if not unit.is_done(since)]
    return todo, len(units) - len(todo), since


class LocalRunner:
    """Every unit in this process, on one worker: a sweep packs into shared batches as today."""

    def run(self, units: Sequence[Unit], *, overwrite: bool = False, progress: bool = True) -> Summary:
        start = time.perf_counter()
        todo, skipped, since = plan(units, overwrite)
        summary = Summary(skipped=skipped, tasks=1 if todo else 0)
        with tqdm(total=len(todo), desc="units", unit="unit", disable=not progress) as bar:
            result = Worker().run(todo, since, report=lambda outcome: bar.update(1))
        summary.add(result.outcomes)
        summary.load_s, summary.work_s = result.load_s, result.work_s
        summary.wall_s = time.perf_counter() - start
        return summary


def tasks_of(units: Sequence[Unit], workers: int, per_task: int = UNITS_PER_TASK) -> list[list[Unit]]:
    """Split units into tasks of at most `per_task` units sharing a pack key, fewer when that keeps
    every worker busy (9 cells on 8 GPUs: 8 tasks, not 3)."""
    groups: dict[str, list[Unit]] = {}
    for unit in units:
        groups.setdefault(unit.pack_key(), []).append(unit)
    tasks: list[list[Unit]] = []
    for group in groups.values():
        size = max(1, min(per_task, math.ceil(len(group) / workers)))
        tasks.extend(group[i : i + size] for i in range(0, len(group), size))
    return tasks


def _retriable(ray: Any) -> tuple[type[BaseException], ...]:
    """Errors that mean the worker (or its node) died, not that the units are wrong."""
    errors = ray.exceptions
    return (errors.RayActorError, errors.WorkerCrashedError, errors.NodeDiedError, errors.OutOfMemoryError)


class RayRunner:
    """Units as tasks on worker actors of a Ray cluster: one actor per GPU, or per CPU without GPUs.

    `address`: a cluster to join (`ray start --head` prints it; "auto" finds one on this node);
    None joins $RAY_ADDRESS when set, else starts a cluster inside this process. When Ray is
    already initialised (a notebook, a test) that cluster is used. While a run is in progress,
    `actors` holds the worker handles and `running` the units of each worker's task in flight.
    """

    def __init__(
        self, address: str | None = None, *, per_task: int = UNITS_PER_TASK, max_attempts: int = MAX_ATTEMPTS
    ) -> None:
        self.address = address
        self.per_task = per_task
        self.max_attempts = max_attempts
        self.actors: list[Any] = []
        self.running: dict[int, list[str]] = {}

    def _connect(self) -> Any:
        try:
            import ray
        except ImportError:
            raise ValueError("--ray needs the ray package: pip install ray==2.60.0") from None
        if not ray.is_initialized():
            env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
            ray.init(
                address=self.address or os.environ.get("RAY_ADDRESS"),
                runtime_env={"env_vars": env},
                log_to_driver=False,
            )
        return ray

    def run(self, units: Sequence[Unit], *, overwrite: bool = False, progress: bool = True) -> Summary:
        start = time.perf_counter()
        todo, skipped, since = plan(units, overwrite)
        summary = Summary(skipped=skipped)
        if not todo:
            return summary
        ray = self._connect()
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        slots = gpus or max(1, int(resources.get("CPU", 1)))
        tasks = tasks_of(todo, slots, self.per_task)
        n_workers = min(slots, len(tasks))
        actor = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_restarts=0)(Worker)
        self.actors = [actor.remote() for _ in range(n_workers)]
        ray.get([a.ready.remote() for a in self.actors])
        summary.startup_s = time.perf_counter() - start
        queue = deque((task, 1) for task in tasks)
        pending: dict[Any, tuple[int, list[Unit], int, float]] = {}

        def submit(slot: int) -> None:
            if queue:
                task, attempt = queue.popleft()
                ref = self.actors[slot].run.remote(task, since)
                pending[ref] = (slot, task, attempt, time.perf_counter())
                self.running[slot] = [unit.name for unit in task]

        for slot in range(n_workers):
            submit(slot)
        with tqdm(total=len(todo), desc="units", unit="unit", disable=not progress) as bar:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                slot, task, attempt, sent = pending.pop(ref)
                self.running.pop(slot, None)
                try:
                    result: TaskResult = ray.get(ref)
                except _retriable(ray) as err:
                    self.actors[slot] = actor.remote()
                    if attempt < self.max_attempts:
                        log.warning("worker died (%s); resubmitting %d unit(s)", type(err).__name__, len(task))
                        queue.appendleft((task, attempt + 1))
                        summary.retried += len(task)
                    else:
                        summary.add([Outcome(u.name, "failed", f"worker died {attempt} times") for u in task])
                        bar.update(len(task))
                    submit(slot)
                    continue
                summary.tasks += 1
                summary.add(result.outcomes)
                summary.load_s += result.load_s
                summary.work_s += result.work_s
                summary.overhead_s += time.perf_counter() - sent - result.load_s - result.work_s
                bar.update(len(task))
                submit(slot)
        for handle in self.actors:
            ray.kill(handle)
        self.actors = []
        summary.wall_s = time.perf_counter() - start
        return summary


def sweep_units(jobs: Sequence[Job], spec: EvalSpec) -> list[EvalUnit]:
    """One unit per sweep cell (`persona.evaluation.sweep_jobs`), output paths made absolute for workers."""
    return [EvalUnit(replace(job, output=job.output.resolve()), spec) for job in jobs]
