"""Multi-Persona Dynamics: persona vectors in a chat model's residual stream.

The library behind every script in this repository, usable from a notebook:

    import persona
    lm = persona.load_model()                       # the embedded SmolLM2-135M-Instruct
    evil = persona.PersonaVector.load("output/persona_vectors/smollm2-135m/evil_response_avg_diff.pt")
    with evil.apply(lm, layer=20, coef=1.5):
        print(persona.generate_answers(lm, [[{"role": "user", "content": "Hi"}]], max_new_tokens=40))

One module per idea: `models` (loading), `sites` (where layer L lives), `steering`
(hooks), `activations` (capture), `generation`, `evaluation`, `judge`, `traits`,
`vectors`, `extraction`, `projection`, `screening` and `monitoring`,
`training`, `io`. Names are imported on first use,
so `import persona` stays cheap for the command-line tools.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "EMBEDDED_MODEL": "persona.defaults",
    "LoadedModel": "persona.models",
    "load_model": "persona.models",
    "residual_site": "persona.sites",
    "Steer": "persona.steering",
    "steering": "persona.steering",
    "is_steered": "persona.steering",
    "PersonaVector": "persona.vectors",
    "load_vector": "persona.vectors",
    "Activations": "persona.activations",
    "capture": "persona.activations",
    "SamplingParams": "persona.generation",
    "generate_answers": "persona.generation",
    "chat_prompts": "persona.generation",
    "Trait": "persona.traits",
    "load_trait": "persona.traits",
    "make_judge": "persona.judge",
    "score_all": "persona.judge",
    "persona_vectors": "persona.extraction",
    "effective_pairs": "persona.extraction",
    "project": "persona.projection",
    "monitor": "persona.monitoring",
}

__all__ = [
    "EMBEDDED_MODEL",
    "Activations",
    "LoadedModel",
    "PersonaVector",
    "SamplingParams",
    "Steer",
    "Trait",
    "capture",
    "chat_prompts",
    "effective_pairs",
    "generate_answers",
    "is_steered",
    "load_model",
    "load_trait",
    "load_vector",
    "make_judge",
    "monitor",
    "persona_vectors",
    "project",
    "residual_site",
    "score_all",
    "steering",
]

if TYPE_CHECKING:
    from persona.activations import Activations, capture
    from persona.defaults import EMBEDDED_MODEL
    from persona.extraction import effective_pairs, persona_vectors
    from persona.generation import SamplingParams, chat_prompts, generate_answers
    from persona.judge import make_judge, score_all
    from persona.models import LoadedModel, load_model
    from persona.monitoring import monitor
    from persona.projection import project
    from persona.sites import residual_site
    from persona.steering import Steer, is_steered, steering
    from persona.traits import Trait, load_trait
    from persona.vectors import PersonaVector, load_vector


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'persona' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
