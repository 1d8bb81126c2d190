"""Run units in-process or on a Ray cluster.

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

import gc
import logging
import math
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from persona.evaluation import EvalSpec
from persona.generation import GenerationBackend
from persona.jobs.units import Report, Unit, UnitResult
from persona.models import LoadedModel, load_model
from persona.vllm_backend import make_backend

log = logging.getLogger(__name__)

# Units per Ray task: enough rows to share generation batches, few enough that a dead worker loses little.
UNITS_PER_TASK = 4
MAX_ATTEMPTS = 3
# Settings forwarded to workers of a cluster this process starts or joins (never secrets such as API keys).
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "PERSONA_CACHE", "PERSONA_DOTENV", "TOKENIZERS_PARALLELISM")


@dataclass
class TaskResult:
    """A worker's report on one task: per-unit results and where its time went."""

    results: list[UnitResult]
    load_s: float = 0.0
    work_s: float = 0.0


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
        results: list[UnitResult] = []

        def record(result: UnitResult) -> None:
            results.append(result)
            if report is not None:
                report(result)

        todo = []
        for unit in units:
            if unit.is_done(since):
                record(UnitResult(unit.name, "skipped"))
            else:
                todo.append(unit)
        for key in dict.fromkeys(unit.pack_key() for unit in todo):
            pack = [unit for unit in todo if unit.pack_key() == key]
            reported = len(results)
            try:
                pack[0].run_pack(self, pack, since, record)
            except Exception as err:  # the error is the unit's result; the other packs still run
                log.exception("units failed: %s", ", ".join(unit.name for unit in pack))
                finished = {o.unit for o in results[reported:]}
                for unit in pack:
                    if unit.name not in finished:
                        record(UnitResult(unit.name, "failed", f"{type(err).__name__}: {err}"))
        total = time.perf_counter() - start
        return TaskResult(results, load_s=self._load_s, work_s=total - self._load_s)


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

    def add(self, results: Sequence[UnitResult]) -> None:
        """Count a task's results; a unit a worker found written (by a worker that died) counts as done."""
        for result in results:
            if result.status == "failed":
                self.failed[result.unit] = result.error or "failed"
            else:
                self.done += 1


def plan(units: Sequence[Unit], overwrite: bool = False) -> tuple[list[Unit], int, float | None]:
    """(units to run, how many are done already, the `since` time that `overwrite` judges outputs by)."""
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
            result = Worker().run(todo, since, report=lambda result: bar.update(1))
        summary.add(result.results)
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
            raise ValueError("`ray` needs the ray package: pip install ray==2.60.0") from None
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
                        summary.add([UnitResult(u.name, "failed", f"worker died {attempt} times") for u in task])
                        bar.update(len(task))
                    submit(slot)
                    continue
                summary.tasks += 1
                summary.add(result.results)
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
