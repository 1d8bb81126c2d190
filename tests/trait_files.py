"""Shipped traits cut down to a few questions and written as trait files, for quick end-to-end runs."""

from __future__ import annotations

import json
from pathlib import Path

from persona.traits import load_trait


def short_trait_file(name: str, folder: Path, n_questions: int = 2) -> Path:
    """`<folder>/<name>.json`: the shipped eval artifact of `name` with its first `n_questions` questions."""
    trait = load_trait(name, "eval")
    path = folder / f"{name}.json"
    artifact = {
        "instruction": [{"pos": p, "neg": n} for p, n in trait.instructions],
        "questions": trait.questions[:n_questions],
        "eval_prompt": trait.eval_prompt,
    }
    path.write_text(json.dumps(artifact))
    return path
