"""Screen finetuning data before training: the projection difference along a persona vector.

Chen et al. (2025, Persona Vectors, section 5) predict how far finetuning on a dataset will
shift a trait from its *projection difference*: for each sample, the response-average
activation of the dataset's response projected onto the trait vector (`a·v/|v|`, the same
scalar as `cal_projection`'s `proj`), minus the same projection of the base model's own
response to the same prompt messages. Data that pulls the model toward the trait scores
above 0; the dataset-level value is the mean of the per-sample column.

Base responses are generated once per (model, prompt, sampling settings) and kept in a
SQLite store (`<cache dir>/base_responses.sqlite`), written after every chunk of prompts:
a killed run resumes at the first prompt without a response, and screening the same
prompts along another vector or layer generates nothing. They are generated through the
backend factory (`persona.vllm_backend.make_backend`): HF, or vLLM where it can run (asked
for where it cannot, HF answers instead, with a logged warning).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from torch import Tensor

from persona.activations import capture
from persona.analysis.stats import mean_interval
from persona.fingerprint import check_finished, code_version, file_sha256, model_ref, read_record, record_path
from persona.generation import GenerationBackend, HFBackend, chat_prompts, row_seed
from persona.io import read_table, write_csv, write_json
from persona.judge.cache import JudgeCache, model_identity
from persona.models import LoadedModel, load_model
from persona.projection import project
from persona.sampling import SamplingParams
from persona.settings import cache_dir
from persona.sites import vector_at_layer
from persona.steering import as_tensor
from persona.training.data import Conversation, DataError, read_chat_file
from persona.vectors import PersonaVector, load_vector
from persona.vllm_backend import make_backend

log = logging.getLogger(__name__)

BASE_RESPONSES_FILE = "base_responses.sqlite"
SAMPLES_FILE = "screen_samples.csv"
SUMMARY_FILE = "screen_summary.csv"
CHUNK_PROMPTS = 64  # prompts generated between two writes to the base-response store
SAMPLE_COLUMNS = (
    "dataset",
    "line",
    "question",
    "data_response",
    "base_response",
    "proj_data",
    "proj_base",
    "projection_difference",
    "prompt_last_proj",
)


@dataclass(frozen=True)
class ChatSample:
    """One row to screen: its row number, the messages before its response, and the response."""

    line: int
    context: Conversation
    response: str

    @property
    def question(self) -> str:
        """The last user message (what a reader of the table wants to see)."""
        return next((m["content"] for m in reversed(self.context) if m["role"] == "user"), "")


@dataclass(frozen=True)
class ChatFile:
    """A read chat JSONL file: its screenable samples and the notes on the rows it skipped."""

    path: Path
    samples: list[ChatSample]
    skipped: list[str]

    @classmethod
    def read(cls, path: str | Path | ChatFile) -> ChatFile:
        return path if isinstance(path, ChatFile) else cls(Path(path), *read_samples(path))


def read_samples(path: str | Path) -> tuple[list[ChatSample], list[str]]:
    """The screenable rows of a chat JSONL file (last assistant turn = the response) and the skipped ones.

    Rows without an assistant turn, or with nothing before it, are skipped and reported by
    row number; a file with no screenable row is an error.
    """
    rows, skipped = read_chat_file(path, skip_unanswered=True)
    samples = []
    for line, messages in rows:
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        if last == 0:
            skipped.append(f"{path}:{line}: nothing before the assistant message to prompt with; skipped")
            continue
        samples.append(ChatSample(line, messages[:last], messages[last]["content"]))
    for note in skipped:
        log.warning("%s", note)
    if not samples:
        raise DataError(f"{path}: no row has a prompt followed by an assistant message, so nothing can be screened")
    return samples, skipped


class BaseResponses:
    """The base model's own responses, cached per (model weights, prompt, sampling settings, engine).

    `backend` is `make_backend`'s name (`auto`, `hf`, `vllm`) or a backend already built (one engine
    shared by several stores); answers from vLLM are kept apart
    from HF's in the store. `hits` and `generated` count prompts served from the store and newly
    generated.
    """

    def __init__(
        self,
        lm: LoadedModel,
        params: SamplingParams,
        *,
        seed: int = 0,
        batch_size: int = 16,
        store: str | Path | None = None,
        backend: str | GenerationBackend = "auto",
        gpu_memory_utilization: float | None = None,
    ) -> None:
        self.lm, self.params, self.seed = lm, params, seed
        self.backend = (
            make_backend(backend, lm, batch_size=batch_size, gpu_memory_utilization=gpu_memory_utilization)
            if isinstance(backend, str)
            else backend
        )
        self.store = JudgeCache(Path(store) if store is not None else cache_dir() / BASE_RESPONSES_FILE)
        self.model = model_identity(lm)
        engine = {} if isinstance(self.backend, HFBackend) else {"engine": type(self.backend).__name__}
        self.setting = "base_response:" + json.dumps({**asdict(params), "seed": seed, **engine}, sort_keys=True)
        self.hits = self.generated = 0

    def __call__(self, prompts: Sequence[str]) -> list[str]:
        """A response per chat-templated prompt; each distinct prompt is generated at most once."""
        found: dict[str, str] = {}
        for prompt in dict.fromkeys(prompts):
            hit, value = self.store.get(self.setting, self.model, prompt)
            if hit:
                found[prompt] = value
        todo = [p for p in dict.fromkeys(prompts) if p not in found]
        self.hits += sum(p in found for p in prompts)
        for start in range(0, len(todo), CHUNK_PROMPTS):
            chunk = todo[start : start + CHUNK_PROMPTS]
            seeds = [row_seed(self.seed, p) for p in chunk]
            for prompt, answer in zip(chunk, self.backend.generate(chunk, self.params, seeds)):
                self.store.put(self.setting, self.model, prompt, answer)
                found[prompt] = answer
            self.generated += len(chunk)
            log.info("base responses: %d of %d new prompts generated", start + len(chunk), len(todo))
        return [found[p] for p in prompts]


def vector_row(lm: LoadedModel, vector: PersonaVector | Tensor, layer: int, source: str = "vector") -> Tensor:
    """The vector's `[hidden]` row at `layer`, checked against the model's shape."""
    return vector_at_layer(
        as_tensor(vector).float(), layer, num_layers=lm.num_layers, hidden_size=lm.hidden_size, source=source
    )


def screen_samples(
    lm: LoadedModel,
    samples: Sequence[ChatSample],
    row: Tensor,
    layer: int,
    base_responses: BaseResponses,
    *,
    batch_size: int = 16,
    dataset: str = "",
) -> pd.DataFrame:
    """One row per sample (`SAMPLE_COLUMNS`): projections of the data and the base response, and their difference."""
    prompts = chat_prompts(lm.tokenizer, [s.context for s in samples])
    data = [s.response for s in samples]
    base = base_responses(prompts)
    acts = capture(lm, prompts + prompts, data + base, layers=[layer], batch_size=batch_size)
    proj = project(acts.at_layer("response_avg", layer), row, "proj").numpy()
    last = project(acts.at_layer("prompt_last", layer), row, "prompt_last_proj").numpy()
    n = len(samples)
    return pd.DataFrame(
        {
            "dataset": dataset,
            "line": [s.line for s in samples],
            "question": [s.question for s in samples],
            "data_response": data,
            "base_response": base,
            "proj_data": proj[:n],
            "proj_base": proj[n:],
            "projection_difference": proj[:n] - proj[n:],
            "prompt_last_proj": last[:n],
        },
        columns=list(SAMPLE_COLUMNS),
    )


def dataset_labels(paths: Sequence[str | Path]) -> list[str]:
    """Short unique names: the file stem, with parent folders added until no two files share one."""
    parts = [Path(p).with_suffix("").parts for p in paths]
    depth = 1
    while True:
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(p) for p in parts):
            return labels
        depth += 1


def summarize(samples: pd.DataFrame, *, ci: float = 0.95) -> pd.DataFrame:
    """One row per dataset: n, mean projection difference with its t interval, mean projections."""
    rows = []
    for name, group in samples.groupby("dataset", sort=False):
        diff = group["projection_difference"].to_numpy(dtype=float)
        interval = mean_interval(group, "projection_difference", cluster="line", ci=ci)  # a sample per cluster
        rows.append(
            {
                "dataset": name,
                "n": len(group),
                "projection_difference": float(np.mean(diff)),
                "ci_low": interval.ci_low,
                "ci_high": interval.ci_high,
                "proj_data": float(group["proj_data"].mean()),
                "proj_base": float(group["proj_base"].mean()),
                "prompt_last_proj": float(group["prompt_last_proj"].mean()),
            }
        )
    return pd.DataFrame(rows)


@dataclass
class Screening:
    """What `screen_files` computed: the per-sample table, the per-dataset summary and the counts."""

    samples: pd.DataFrame
    summary: pd.DataFrame
    skipped: list[str] = field(default_factory=list)
    cache_hits: int = 0
    generated: int = 0
    reused: bool = False  # read back from a finished run's files


def screen_files(
    lm: LoadedModel,
    paths: Sequence[str | Path | ChatFile],
    vector: PersonaVector | Tensor,
    layer: int,
    *,
    max_tokens: int | None = None,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 16,
    store: str | Path | None = None,
    ci: float = 0.95,
    backend: str = "auto",
    gpu_memory_utilization: float | None = None,
) -> Screening:
    """Screen chat JSONL files (paths or already read) along `vector` at `layer`; see the module docstring.

    `max_tokens` caps the base responses; None uses the longest data response (in tokens)
    of all files, so base and data responses get the same length budget. `backend` generates
    the base responses (`BaseResponses`).
    """
    if not paths:
        raise ValueError("give at least one chat JSONL file to screen")
    row = vector_row(lm, vector, layer)
    read = [ChatFile.read(p) for p in paths]
    if max_tokens is None:
        texts = [s.response for f in read for s in f.samples]
        max_tokens = max(1, max(len(ids) for ids in lm.tokenizer(texts, add_special_tokens=False)["input_ids"]))
        log.info("base responses capped at %d tokens (the longest data response)", max_tokens)
    params = SamplingParams(max_new_tokens=max_tokens, temperature=temperature)
    base = BaseResponses(
        lm,
        params,
        seed=seed,
        batch_size=batch_size,
        store=store,
        backend=backend,
        gpu_memory_utilization=gpu_memory_utilization,
    )
    tables = [
        screen_samples(lm, f.samples, row, layer, base, batch_size=batch_size, dataset=label)
        for f, label in zip(read, dataset_labels([f.path for f in read]))
    ]
    table = pd.concat(tables, ignore_index=True)
    skipped = [note for f in read for note in f.skipped]
    return Screening(table, summarize(table, ci=ci), skipped, cache_hits=base.hits, generated=base.generated)


def run_screening(
    output_dir: str | Path,
    paths: Sequence[str | Path],
    vector_path: str | Path,
    layer: int,
    *,
    model_name: str,
    max_tokens: int | None = None,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 16,
    overwrite: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    store: str | Path | None = None,
    backend: str = "auto",
    gpu_memory_utilization: float | None = None,
    samples_name: str = SAMPLES_FILE,
) -> Screening:
    """`screen_files` with outputs: `samples_name` (default `screen_samples.csv`) and `screen_summary.csv`
    in `output_dir`.

    A rerun with the same inputs and settings reads the finished files back (no model load);
    other settings are an error unless `overwrite`. The record is written last, so a run
    killed before it recomputes (its base responses come from the store).
    """
    output_dir = Path(output_dir)
    samples_path, summary_path = output_dir / samples_name, output_dir / SUMMARY_FILE
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"data file(s) {missing} do not exist (check the paths)")
    vector = load_vector(vector_path)
    settings = {
        "files": {str(p): file_sha256(p) for p in paths},
        "vector": str(vector_path),
        "vector_sha256": file_sha256(vector_path),
        "layer": layer,
        "model": model_ref(model_name),
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": seed,
        "code_version": code_version(),
    }
    if (
        not overwrite
        and summary_path.is_file()
        and check_finished(str(samples_path), read_record(samples_path), settings)
    ):
        log.info("%s is finished with these settings; reading it back", samples_path)
        return Screening(read_table(samples_path), read_table(summary_path), reused=True)
    files = [ChatFile.read(p) for p in paths]  # bad data fails before the model loads
    lm = load_model(model_name, device=device, dtype=dtype)
    result = screen_files(
        lm,
        files,
        vector,
        layer,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
        store=store,
        backend=backend,
        gpu_memory_utilization=gpu_memory_utilization,
    )
    result.summary = result.summary.assign(
        file=[str(p) for p in paths], vector=str(vector_path), layer=layer, model=model_name
    )
    write_csv(samples_path, result.samples)
    write_csv(summary_path, result.summary)
    write_json(record_path(samples_path), settings)
    return result
