"""The output layout of the original study, in one place: where each step writes for a model.

    output/eval_persona_extract/<model>/{trait}_{pos,neg}_instruct.csv   pos/neg persona answers
    output/persona_vectors/<model>/{trait}_{kind}_diff.pt                vectors (+ {trait}_vectors.json)
    output/eval_persona_eval/<model>/                                     baselines and steering sweeps
    output/{trait}_projection_eval/checkpoint-{N}_{judge_trait}.csv       checkpoint evaluations
    figs/                                                                 figures

`<model>` is the Hub id with its organisation folder (`Qwen/Qwen3-4B-Instruct-2507`), or the
folder name of a local model, so files from the original pipelines land in the same places.
The pipelines in `scripts/` read these paths from `python -m persona.layout MODEL`; this module
imports nothing heavy so that call stays cheap.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

OUTPUT_ROOT = "output"
FIGS_DIR = "figs"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def model_dir_name(spec: str) -> str:
    """`<model>` in the layout: a Hub id as is (organisation folder kept), a local model's folder name.

    A spec that exists on disk is local, whatever it looks like; `smollm2-135m` (the embedded
    model) and other plain names are used as they are.
    """
    spec = str(spec).rstrip("/")
    if not spec:
        raise ValueError("model spec is empty")
    if os.path.exists(spec) or not _HUB_ID.fullmatch(spec):
        return Path(spec).name
    return spec


@dataclass(frozen=True)
class Layout:
    """The folders one model's results go to, under `root` (default `output`)."""

    model: str
    root: str = OUTPUT_ROOT

    @property
    def name(self) -> str:
        return model_dir_name(self.model)

    @property
    def extract_dir(self) -> Path:
        return Path(self.root) / "eval_persona_extract" / self.name

    @property
    def vectors_dir(self) -> Path:
        return Path(self.root) / "persona_vectors" / self.name

    @property
    def eval_dir(self) -> Path:
        return Path(self.root) / "eval_persona_eval" / self.name

    def projection_dir(self, trait: str) -> Path:
        """Checkpoint evaluations of a model finetuned on `trait` (not per model, as in the original)."""
        return Path(self.root) / f"{trait}_projection_eval"


def num_layers(spec: str) -> int:
    """Decoder layers of a Hub or local model, from its config alone (no weights are loaded)."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(spec).num_hidden_layers)


def shell_assignments(layout: Layout, trait: str | None = None) -> str:
    """`NAME=value` lines a bash pipeline can `eval` (values shell-quoted); PROJECTION_DIR with a trait."""
    values = {
        "MODEL_NAME": layout.name,
        "EXTRACT_DIR": layout.extract_dir,
        "VECTOR_DIR": layout.vectors_dir,
        "EVAL_DIR": layout.eval_dir,
    }
    if trait:
        values["PROJECTION_DIR"] = layout.projection_dir(trait)
    return "\n".join(f"{key}={shlex.quote(str(value))}" for key, value in values.items())
