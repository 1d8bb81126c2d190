"""The study's grids as independent units (`units`), run in-process or on a Ray cluster (`runners`)."""

from persona.jobs.runners import LocalRunner, RayRunner, Summary, TaskResult, Worker, tasks_of
from persona.jobs.units import CheckpointUnit, EvalUnit, TraitVectorsUnit, Unit, UnitResult, sweep_units

__all__ = [
    "CheckpointUnit",
    "EvalUnit",
    "LocalRunner",
    "RayRunner",
    "Summary",
    "TaskResult",
    "TraitVectorsUnit",
    "Unit",
    "UnitResult",
    "Worker",
    "sweep_units",
    "tasks_of",
]
