"""Persona evaluation: build the chats for a trait, generate (optionally steered), judge.

A plain evaluation is a sweep with one cell. A sweep packs the rows of all its cells
into shared generation batches (per-row coefficients and layers), so a small grid fills
the batch; per-row seeds keep every cell equal to a run of that cell alone.

Resume: each job's generated answers wait for judging in `<out>.answers.csv` with the
settings that produced them in `<out>.answers.json`; a rerun reuses them only when the
settings match (model weights, steering vectors and coefficients, sampling, seed,
questions, code version) and otherwise says what differs and generates anew.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from persona.fingerprint import record_path
from persona.generation import GenerationBackend, SamplingParams, chat_prompts, row_seed
from persona.io import read_table, write_csv, write_json
from persona.judge.runner import Judge, score_all
from persona.judge.sidecar import write_sidecar
from persona.steering import Positions, Steer
from persona.traits import Trait
from persona.vectors import PersonaVector, as_tensor

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("question", "prompt", "answer", "question_id")


@dataclass
class Sample:
    """One chat to answer: a question, its system prompt (if any) and its sample index."""

    question: str
    question_id: str
    messages: list[dict[str, str]]
    sample: int


@dataclass
class Cell:
    """One evaluation condition: the steers applied to every row of it."""

    name: str
    steers: list[Steer] = field(default_factory=list)


def build_samples(
    trait: Trait,
    *,
    n_per_question: int,
    instruction_type: Literal["pos", "neg"] | None = None,
    assistant_name: str | None = None,
) -> list[Sample]:
    """The chats of an evaluation, in the original order (question, instruction, sample).

    With an instruction type every question is asked under each of the trait's 5 system
    prompts, so pos and neg runs pair up row by row.
    """
    samples: list[Sample] = []
    for i, question in enumerate(trait.questions):
        variants: list[tuple[str, list[dict[str, str]]]]
        if instruction_type is None:
            variants = [(f"{trait.name}_{i}", [])]
        else:
            variants = [
                (
                    f"{trait.name}_{i}_{instruction_type}_{k}",
                    [{"role": "system", "content": trait.system_prompt(instruction_type, k, assistant_name)}],
                )
                for k in range(len(trait.instructions))
            ]
        for qid, system in variants:
            messages = system + [{"role": "user", "content": question}]
            samples.extend(Sample(question, qid, messages, s) for s in range(n_per_question))
    return samples


def _steer_factory(cells: Sequence[Cell], cell_of_row: Sequence[int]):
    """Per-batch steers: one hook per distinct (vector, layer, positions, op), per-row coefs."""

    def factory(rows: Sequence[int]) -> list[Steer]:
        groups: dict[tuple, tuple[Steer, torch.Tensor]] = {}
        for slot, row in enumerate(rows):
            for steer in cells[cell_of_row[row]].steers:
                key = (id(steer.vector), steer.layer, steer.positions, steer.op)
                if key not in groups:
                    groups[key] = (steer, torch.zeros(len(rows)))
                groups[key][1][slot] += float(steer.coef)
        return [Steer(s.vector, s.layer, coefs, s.positions, s.op) for s, coefs in groups.values()]

    return factory


def generate_cells(
    backend: GenerationBackend,
    tokenizer,
    samples: Sequence[Sample],
    cells: Sequence[Cell],
    params: SamplingParams,
    seed: int,
) -> list[pd.DataFrame]:
    """Answer every sample under every cell in shared batches; one frame per cell."""
    prompts = chat_prompts(tokenizer, [s.messages for s in samples])
    seeds = [row_seed(seed, s.question_id, s.sample, s.question) for s in samples]
    all_prompts = prompts * len(cells)
    cell_of_row = [c for c in range(len(cells)) for _ in samples]
    steered = any(cell.steers for cell in cells)
    factory = _steer_factory(cells, cell_of_row) if steered else None
    answers = backend.generate(all_prompts, params, seeds * len(cells), factory)
    frames = []
    for c in range(len(cells)):
        chunk = answers[c * len(samples) : (c + 1) * len(samples)]
        frames.append(
            pd.DataFrame(
                {
                    "question": [s.question for s in samples],
                    "prompt": prompts,
                    "answer": chunk,
                    "question_id": [s.question_id for s in samples],
                }
            )
        )
    return frames


def judge_frame(df: pd.DataFrame, judges: dict[str, Judge], *, max_concurrent: int) -> pd.DataFrame:
    """Add one score column per judge (trait column, then coherence); failures stay None."""

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


def split_done(jobs: Sequence[Job], overwrite: bool = False) -> tuple[list[Job], list[Job]]:
    """(jobs still to run, jobs whose scored CSV already exists); `overwrite` reruns everything.

    A finished job's answers still waiting for judging (a kill just after its CSV) are dropped.
    """
    todo = [job for job in jobs if overwrite or not job.output.exists()]
    done = [job for job in jobs if job not in todo]
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
    model_id: str, samples: Sequence[Sample], params: SamplingParams, seed: int, cell: Cell
) -> dict[str, Any]:
    """Everything that determines a cell's answers (see the module docstring)."""
    from persona import __version__

    questions = json.dumps([(s.question_id, s.sample, s.messages) for s in samples], ensure_ascii=False)
    return {
        "model": model_id,
        "questions_sha256": _digest(questions.encode()),
        "n_rows": len(samples),
        "sampling": asdict(params),
        "seed": seed,
        "steers": [steer_fingerprint(s) for s in cell.steers],
        "code_version": __version__,
    }


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    return [key for key in sorted(set(saved) | set(wanted)) if saved.get(key) != wanted.get(key)]


def load_saved_answers(job: Job, fingerprint: dict[str, Any]) -> pd.DataFrame | None:
    """The job's saved answers if they were made with exactly these settings, else None (and why, logged)."""
    if not job.answers_path.exists():
        return None
    saved = json.loads(job.settings_path.read_text()) if job.settings_path.exists() else {}
    differ = _differences(saved, fingerprint)
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
    seed: int,
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
    answers to judge again. An older CSV there (`--overwrite`) goes first: new records never sit
    beside a CSV they do not describe.
    """
    job.output.unlink(missing_ok=True)
    if judged_by is not None:
        write_sidecar(job.output, judged_by)
    if made_with is not None:
        write_json(record_path(job.output), made_with)
    write_csv(job.output, scored)
    drop_answers(job)
