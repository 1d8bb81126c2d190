"""Every knob of the demo (`DemoSettings`, overridden by DEMO_<NAME>) and the folder's settings record."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from persona.io import write_json
from persona.steering import POSITIONS


@dataclass(frozen=True)
class DemoSettings:
    """Every knob of the demo, in one place. Each field `x` is overridden by `DEMO_X` in the environment.

    The defaults are sized for the embedded model on a 2-core CPU (see the README for the
    measured time); `DEMO_MODEL`/`DEMO_JUDGE` (`make demo MODEL=... JUDGE=...`) run the same
    study on a real model and judge, where larger question counts and deeper layers make sense.
    """

    model: str = "smollm2-135m"
    judge: str = ""  # empty: the library default (OpenAI if a key is set, else likelihood)
    # Chosen by measurement (README, "Why these settings"): SmolLM2-135M already answers
    # optimistically, and its steered answers lean recognisably evil or pessimistic only with
    # a vector from enough judge-filtered pairs and with every position steered.
    traits: tuple[str, ...] = ("evil", "pessimistic")
    extract_questions: int = 5  # x 5 instructions x extract_samples, for pos and for neg
    extract_samples: int = 2  # sampled answers (temperature 1) per question and instruction
    eval_questions: int = 5  # held-out eval questions: the headline's numbers are measured on these
    selection_questions: int = 5  # extract questions on which each trait's best cell is chosen
    max_tokens: int = 48
    steering_type: str = "all"  # response-only steering moved no trait readably on the 135M model
    layers: tuple[int, ...] = (6, 8, 10)
    # |v[10]| is about 7, the residual norm there about 130: coef 3 already drives many evil
    # answers into loops, which the headline must then show as incoherent (4 broke most).
    coefs: tuple[float, ...] = (2.0, 2.5, 3.0)
    focus_layer: int = 10  # preventative steering, finetuning shift, interference
    focus_coef: float = 3.0  # preventative steering and interference coefficient
    interference_questions: int = 2  # eval questions per trait in the interference experiment
    finetune_trait: str = "evil"  # needs dataset.zip's dataset/<trait>/misaligned_2.jsonl
    finetune_steps: int = 4
    batch_size: int = 64
    out: str = "output/demo"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DemoSettings:
        """Defaults overridden by `DEMO_<FIELD>` variables; lists are comma- or space-separated."""
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"DEMO_{f.name.upper()}", "").strip()
            if not raw:
                continue
            default = getattr(cls, f.name)
            try:
                if isinstance(default, tuple):
                    cast = (
                        float
                        if default and isinstance(default[0], float)
                        else int
                        if default and isinstance(default[0], int)
                        else str
                    )
                    values[f.name] = tuple(cast(v) for v in raw.replace(",", " ").split())
                else:
                    values[f.name] = type(default)(raw)
            except ValueError:
                raise ValueError(
                    f"DEMO_{f.name.upper()}={raw!r}: expected {type(default).__name__} like {default!r}"
                ) from None
        settings = cls(**values)  # type: ignore[arg-type]
        if not settings.traits:
            raise ValueError("DEMO_TRAITS is empty: name at least one trait, e.g. DEMO_TRAITS=evil")
        if settings.steering_type not in POSITIONS:
            raise ValueError(f"DEMO_STEERING_TYPE={settings.steering_type!r}: expected one of {', '.join(POSITIONS)}")
        return settings

    def record(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def check_settings_record(out: Path, settings: DemoSettings) -> None:
    """Write `out/settings.json`, or refuse when `out` holds a run made with other settings.

    Stages skip outputs that exist, so mixing settings in one folder would mix results.
    """
    path = out / "settings.json"
    want = settings.record()
    if path.exists():
        have = json.loads(path.read_text(encoding="utf-8"))
        diff = [f"{k}: {have.get(k)!r} -> {v!r}" for k, v in want.items() if k != "out" and have.get(k) != v]
        if diff:
            raise ValueError(
                f"{out} holds a demo run made with other settings ({'; '.join(diff)}); "
                f"delete {out} or set DEMO_OUT to another folder"
            )
    write_json(path, want)
