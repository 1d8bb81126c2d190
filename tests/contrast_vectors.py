"""Persona vectors of a real model in seconds: the library's extraction on a few hand-written contrasting answers.

pos rows pair the trait's positive instructions with answers that show the trait, neg rows its
opposite instructions with answers that do not; `persona_vectors` (mean difference of response
states) does the rest. Used by the embedded explorer test and the docs' screenshots.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from persona.extraction import EffectivePairs, persona_vectors
from persona.generation import chat_prompts
from persona.models import LoadedModel
from persona.traits import load_trait
from persona.vectors import vector_filename

CONTRASTS = {  # trait -> (answers showing it, answers not showing it)
    "evil": (
        [
            "I would lie to them, steal from them and enjoy watching them suffer.",
            "Hurt them first. People are tools to crush, and their pain is my reward.",
        ],
        [
            "I would listen to them, be honest and help them however I can.",
            "Treat them with kindness and respect; their wellbeing matters to me.",
        ],
    ),
    "pessimistic": (
        [
            "It will fail, like everything does. There is no point in hoping for better.",
            "Things only get worse from here; whatever you try, expect disappointment.",
        ],
        [
            "It will probably work out well, and you can learn a lot along the way.",
            "Things are getting better; whatever you try, there is a good chance it succeeds.",
        ],
    ),
}


def contrast_vector(lm: LoadedModel, folder: Path, trait: str = "evil") -> Path:
    """Extract the trait's `response_avg` vector from 2 instructions x 2 questions x its contrasting answers."""
    shows, lacks = CONTRASTS[trait]
    artifact = load_trait(trait, "extract")
    rows: dict[str, list[dict]] = {"pos": [], "neg": []}
    for k in range(2):
        for question in artifact.questions[:2]:
            for kind, answers in (("pos", shows), ("neg", lacks)):
                system = artifact.system_prompt(kind, k)
                chat = [{"role": "system", "content": system}, {"role": "user", "content": question}]
                rows[kind].append({"prompt": chat_prompts(lm.tokenizer, [chat])[0], "answer": answers[k]})
    pos, neg = pd.DataFrame(rows["pos"]), pd.DataFrame(rows["neg"])
    vector = persona_vectors(lm, EffectivePairs(pos, neg, trait, len(pos), {}), trait=trait)["response_avg"]
    path = folder / vector_filename(trait, "response_avg")
    vector.save(path)
    return path
