"""The explorer's work as plain functions over one loaded model, testable without the UI.

Answers come from the calls `eval_persona` makes (`generate_cells` on the chosen generation
backend: the chat template, per-row seeds from `row_seed`, cells packed into shared batches with
per-row coefficients) and scores
from its judges (`make_judges` + `judge_frame`). So an answer shown here is the answer a
one-question evaluation with the same settings writes, and a trait question picked from the
trait's list keeps its `question_id` (and with it its sampling seed).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from persona.activations import token_states
from persona.evaluation import Cell, Sample, generate_cells, judge_frame
from persona.generation import GenerationBackend, HFBackend, chat_prompts
from persona.judge.factory import JudgeSettings, is_proxy, make_judges, resolve_spec
from persona.judge.runner import Judge
from persona.models import LoadedModel
from persona.projection import project
from persona.sampling import SamplingParams, study_sampling
from persona.sites import vector_at_layer
from persona.steering import Positions, Steer, check_steers
from persona.traits import Trait, load_trait
from persona.vectors import PersonaVector

FREE_PROMPT_ID = "prompt"  # the question_id of a prompt that is none of the trait's questions


@dataclass(frozen=True)
class VectorChoice:
    """One vector of a steering setting: its file, the layer and the coefficient."""

    path: str
    layer: int
    coef: float


def question_id(prompt: str, system: str, trait: Trait | None) -> str:
    """The id `build_samples` gives this chat (`evil_3`, `evil_3_pos_0`), else `prompt`."""
    if trait is None or prompt not in trait.questions:
        return FREE_PROMPT_ID
    base = f"{trait.name}_{trait.questions.index(prompt)}"
    if not system:
        return base
    for kind in ("pos", "neg"):
        for k in range(len(trait.instructions)):
            if trait.system_prompt(kind, k) == system:
                return f"{base}_{kind}_{k}"
    return FREE_PROMPT_ID


def chat_sample(prompt: str, system: str = "", trait: Trait | None = None) -> Sample:
    """The one-row evaluation sample of a prompt and an optional system prompt."""
    prompt, system = prompt.strip(), system.strip()
    if not prompt:
        raise ValueError("prompt is empty: type a question or pick one of the trait's questions")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return Sample(prompt, question_id(prompt, system, trait), messages, 0)


def sampling(max_tokens: int, temperature: float = 0.0) -> SamplingParams:
    """The study's sampling for one answer per question: greedy unless a temperature is given."""
    return study_sampling(1, int(max_tokens), float(temperature))


def judge_label(settings: JudgeSettings) -> str:
    """What scores the answers, said plainly: the offline proxy is labelled as one."""
    spec = resolve_spec(settings.judge_model, settings.judge_base_url)
    if is_proxy(spec):
        return f"{spec}: the offline likelihood proxy judge (not an LLM judge)"
    return f"{spec} (LLM judge)"


class Explorer:
    """One model per process, with the lock that keeps two requests from steering it at once.

    Steering hooks live on the shared model, so every generation, judgment and capture runs
    under `lock`; vectors are read once per file version, judges built once per trait. Answers
    come from `backend` (default: the HF backend on `lm`; `make_backend` chooses vLLM or HF).
    """

    def __init__(
        self, lm: LoadedModel, judge: JudgeSettings | None = None, backend: GenerationBackend | None = None
    ) -> None:
        self.lm = lm
        self.judge = judge or JudgeSettings()
        self.backend = backend or HFBackend(lm)
        self.lock = threading.Lock()
        self._vectors: dict[str, tuple[float, PersonaVector]] = {}
        self._judges: dict[str, dict[str, Judge]] = {}
        self._traits: dict[str, Trait] = {}

    # --- inputs ------------------------------------------------------------------------
    def vector(self, path: str | os.PathLike) -> PersonaVector:
        """The vector in `path` (reread when the file changes)."""
        key = str(path)
        if not key:
            raise ValueError("no vector chosen: pick a vector file")
        mtime = Path(key).stat().st_mtime if Path(key).is_file() else -1.0
        cached = self._vectors.get(key)
        if cached is None or cached[0] != mtime:
            cached = self._vectors[key] = (mtime, PersonaVector.load(key))
        return cached[1]

    def trait(self, name: str | None) -> Trait | None:
        """The trait's eval artifact (held-out questions, as steering evaluations use); None for none."""
        if not name:
            return None
        if name not in self._traits:
            self._traits[name] = load_trait(name, "eval")
        return self._traits[name]

    def steers(self, choices: Sequence[VectorChoice], positions: Positions) -> list[Steer]:
        """Steers for `choices`, checked against the model (size and layer range) before any generation."""
        steers = [Steer(self.vector(c.path), int(c.layer), float(c.coef), positions) for c in choices]
        check_steers(self.lm.model, steers)
        return steers

    # --- generation --------------------------------------------------------------------
    def answers(self, sample: Sample, cells: Sequence[Cell], params: SamplingParams, seed: int) -> list[str]:
        """The sample's answer under every cell, all cells packed into one generation."""
        with self.lock:
            frames = generate_cells(self.backend, self.lm.tokenizer, [sample], cells, params, seed)
        return [str(frame["answer"].iloc[0]) for frame in frames]

    def steer_pair(
        self, sample: Sample, choices: Sequence[VectorChoice], positions: Positions, params: SamplingParams, seed: int
    ) -> tuple[str, str]:
        """(unsteered answer, steered answer), generated side by side."""
        steers = self.steers(choices, positions)
        unsteered, steered = self.answers(sample, [Cell("unsteered"), Cell("steered", steers)], params, seed)
        return unsteered, steered

    def strip(
        self,
        sample: Sample,
        choice: VectorChoice,
        coefs: Sequence[float],
        positions: Positions,
        params: SamplingParams,
        seed: int,
    ) -> list[str]:
        """The sample answered at every coefficient of one vector and layer: a one-prompt steering sweep."""
        if not coefs:
            raise ValueError("coefs is empty: give at least one coefficient")
        vector = self.vector(choice.path)
        cells = [Cell(f"coef {c}", [Steer(vector, int(choice.layer), float(c), positions)]) for c in coefs]
        check_steers(self.lm.model, [cell.steers[0] for cell in cells])
        return self.answers(sample, cells, params, seed)

    # --- judging and projection --------------------------------------------------------
    def scores(self, trait: Trait | None, question: str, answers: Sequence[str]) -> pd.DataFrame:
        """One row per answer: the trait's judge column and coherence (no columns without a trait)."""
        frame = pd.DataFrame({"question": [question] * len(answers), "answer": list(answers)})
        if trait is None:
            return frame
        if trait.name not in self._judges:
            self._judges[trait.name] = make_judges(self.judge, trait=trait, eval_model=self.lm)
        with self.lock:
            return judge_frame(frame, self._judges[trait.name], max_concurrent=self.judge.max_concurrent_judges)

    def token_values(self, sample: Sample, answer: str, path: str, layer: int) -> list[tuple[str, float]]:
        """Each answer token and its projection `h·v/|v|` onto the vector at `layer` (cal_projection's `proj`).

        Their mean is the answer's `proj` value, as `cal_projection` computes it from the mean state.
        """
        vector = vector_at_layer(
            self.vector(path).tensor,
            int(layer),
            num_layers=self.lm.num_layers,
            hidden_size=self.lm.hidden_size,
            source=f"vector {path}",
        )
        prompt = chat_prompts(self.lm.tokenizer, [sample.messages])[0]
        with self.lock:
            ids, n_prompt, states = token_states(self.lm, prompt, answer, int(layer))
        values = project(states[n_prompt:], vector, "proj").tolist()
        return list(zip(token_pieces(self.lm.tokenizer, ids[n_prompt:]), values))


def token_pieces(tokenizer, ids: Sequence[int]) -> list[str]:
    """The text each token adds to the decoded answer (multi-byte characters land on the token that completes them)."""
    pieces, before = [], ""
    for i in range(len(ids)):
        text = tokenizer.decode(list(ids[: i + 1]), skip_special_tokens=False)
        pieces.append(text[len(before) :] if text.startswith(before) else text)
        before = text
    return pieces
