"""Where an evaluation's results wait and land: generated answers, their settings, the finished CSV.

Each job's generated answers wait for judging in `<out>.answers.csv` with the settings that
produced them in `<out>.answers.json`; a rerun reuses them only when the settings match
(model weights, steering vectors and coefficients, sampling, seeds, questions, backend, code
version) and otherwise says what differs and generates anew. A finished CSV is written last,
after its judge sidecar (`<out>.judge.json`) and settings record (`<out>.settings.json`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from persona.cells import OUTPUT_COLUMNS, Cell, Sample, generate_cells
from persona.fingerprint import differences, record_path
from persona.generation import GenerationBackend, SamplingParams
from persona.io import read_table, write_csv, write_json
from persona.judge.sidecar import write_sidecar
from persona.steering import Steer, as_tensor

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One cell and the CSV its scored answers go to."""

    cell: Cell
    output: Path

    @property
    def answers_path(self) -> Path:
        """Where generated answers wait for judging, so an interrupted run never regenerates them."""
        return self.output.with_name(self.output.stem + ".answers.csv")

    @property
    def settings_path(self) -> Path:
        return self.output.with_name(self.output.stem + ".answers.json")


def split_done(jobs: Sequence[Job], overwrite: bool = False) -> tuple[list[Job], list[Job]]:
    """(jobs still to run, jobs whose scored CSV already exists); `overwrite` reruns everything.

    A finished job's answers still waiting for judging (a kill just after its CSV) are dropped.
    """
    todo: list[Job] = []
    done: list[Job] = []
    for job in jobs:  # by output file: two cells of one name and different vectors never compare their tensors
        (todo if overwrite or not job.output.exists() else done).append(job)
    for job in done:
        drop_answers(job)
    return todo, done


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def steer_fingerprint(steer: Steer) -> dict[str, Any]:
    """What a steer contributes to generated answers: the vector's content, not its file name."""
    vector = as_tensor(steer.vector).detach().to("cpu", torch.float32).contiguous()
    coef = steer.coef.tolist() if isinstance(steer.coef, torch.Tensor) else float(steer.coef)
    return {
        "vector_sha256": _digest(vector.numpy().tobytes()),
        "layer": steer.layer,
        "coef": coef,
        "positions": steer.positions,
        "op": steer.op,
    }


def generation_fingerprint(
    model_id: str, samples: Sequence[Sample], params: SamplingParams, seed: int | Sequence[int], cell: Cell
) -> dict[str, Any]:
    """Everything that determines a cell's answers (see the module docstring)."""
    from persona import __version__

    questions = json.dumps([(s.question_id, s.sample, s.messages) for s in samples], ensure_ascii=False)
    return {
        "model": model_id,
        "questions_sha256": _digest(questions.encode()),
        "n_rows": len(samples),
        "sampling": asdict(params),
        "seed": seed if isinstance(seed, int) else list(seed),
        "steers": [steer_fingerprint(s) for s in cell.steers],
        "code_version": __version__,
    }


def load_saved_answers(job: Job, fingerprint: dict[str, Any]) -> pd.DataFrame | None:
    """The job's saved answers if they were made with exactly these settings, else None (and why, logged)."""
    if not job.answers_path.exists():
        return None
    saved = json.loads(job.settings_path.read_text()) if job.settings_path.exists() else {}
    differ = differences(saved, fingerprint)
    if differ:
        log.warning(
            "not reusing %s: made with other settings (%s differ); generating anew", job.answers_path, ", ".join(differ)
        )
        return None
    frame = read_table(job.answers_path, required=OUTPUT_COLUMNS)
    frame["answer"] = frame["answer"].fillna("")
    log.info("reusing generated answers from %s", job.answers_path)
    return frame


def answers_with_resume(
    jobs: Sequence[Job],
    samples: Sequence[Sample],
    backend: GenerationBackend,
    tokenizer,
    params: SamplingParams,
    seed: int | Sequence[int],
    model_id: str,
) -> list[pd.DataFrame]:
    """Answers for every job: saved ones whose settings match, the rest generated in shared batches."""
    # the backend too: HF and vLLM draw different samples from the same seed
    prints = [
        {**generation_fingerprint(model_id, samples, params, seed, job.cell), "backend": type(backend).__name__}
        for job in jobs
    ]
    frames: dict[int, pd.DataFrame] = {}
    for i, job in enumerate(jobs):
        frame = load_saved_answers(job, prints[i])
        if frame is not None:
            frames[i] = frame
    missing = [i for i in range(len(jobs)) if i not in frames]
    if missing:
        new = generate_cells(backend, tokenizer, samples, [jobs[i].cell for i in missing], params, seed)
        for i, frame in zip(missing, new):  # settings last: answers without them are never reused
            jobs[i].settings_path.unlink(missing_ok=True)
            write_csv(jobs[i].answers_path, frame)
            write_json(jobs[i].settings_path, prints[i])
            frames[i] = frame
    return [frames[i] for i in range(len(jobs))]


def drop_answers(job: Job) -> None:
    """Delete the answers (and their settings) that waited for judging."""
    job.answers_path.unlink(missing_ok=True)
    job.settings_path.unlink(missing_ok=True)


def finish_job(
    job: Job, scored: pd.DataFrame, judged_by: dict[str, Any] | None = None, made_with: dict[str, Any] | None = None
) -> None:
    """Write the scored CSV last, after its judge sidecar and settings record; then drop the answers.

    So every CSV a rerun sees has its records, and a kill before the CSV is in place leaves the
    answers to judge again. An older CSV there (`overwrite`) goes first: new records never sit
    beside a CSV they do not describe.
    """
    job.output.unlink(missing_ok=True)
    if judged_by is not None:
        write_sidecar(job.output, judged_by)
    if made_with is not None:
        write_json(record_path(job.output), made_with)
    write_csv(job.output, scored)
    drop_answers(job)
