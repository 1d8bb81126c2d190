"""`<csv>.judge.json`: which judge scored a file, with which prompts, when.

Scores from the offline proxy and from an LLM judge look alike in a CSV; the sidecar
says which is which, so a number is never read without its judge. It records the judge
spec that ran, the eval type, a SHA-256 of every prompt the judge read (the trait's
`eval_prompt`, the coherence template, or for the proxy the trait's system prompts) and
where each came from. `generate_vec` copies the sidecars of its inputs into the vectors'
metadata.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona.io import write_json
from persona.judge.factory import DEFAULT_OPENAI_JUDGE, JudgeSettings, judge_kind, load_coherence_prompt, resolve_spec
from persona.judge.prompts import COHERENCE, coherence_prompt, trait_prompt

if TYPE_CHECKING:
    from persona.traits import Trait

SUFFIX = ".judge.json"


def sidecar_path(csv_path: str | os.PathLike) -> Path:
    return Path(f"{csv_path}{SUFFIX}")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def judge_record(args: JudgeSettings, *, trait: Trait) -> dict[str, Any]:
    """What `args` score `trait` with: spec, eval type, prompt hashes."""
    spec = resolve_spec(args.judge_model, args.judge_base_url)
    kind = judge_kind(spec)
    trait_source = f"eval_prompt of trait {trait.name!r}" + (f" ({trait.source})" if trait.source else "")
    if kind.proxy:
        pairs = json.dumps(trait.instructions, ensure_ascii=False)
        columns = {
            trait.judge_column: {
                "prompt_sha256": _sha256(pairs),
                "prompt_source": f"pos/neg instructions of trait {trait.name!r}",
            },
            COHERENCE: {"prompt_sha256": None, "prompt_source": "none (mean answer log-prob)"},
        }
    else:
        if args.coherence_prompt:
            coherence, coherence_source = load_coherence_prompt(args.coherence_prompt), str(args.coherence_prompt)
        else:
            coherence, coherence_source = coherence_prompt(args.judge_eval_type), "built-in"
        columns = {
            trait.judge_column: {
                "prompt_sha256": _sha256(trait_prompt(trait.eval_prompt, args.judge_eval_type)),
                "prompt_source": trait_source,
            },
            COHERENCE: {"prompt_sha256": _sha256(coherence), "prompt_source": coherence_source},
        }
    return {
        "judge": spec,
        "method": kind.method,
        "default_judge": args.judge_model is None,
        "paper_judge": spec == DEFAULT_OPENAI_JUDGE,
        "base_url": args.judge_base_url,
        "eval_type": args.judge_eval_type,
        "trait": trait.name,
        "columns": columns,
    }


def write_sidecar(csv_path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write `<csv>.judge.json` (atomically) with the record and the date it was scored."""
    path = sidecar_path(csv_path)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    write_json(path, {**record, "file": Path(csv_path).name, "date": now})
    return path


def read_sidecar(csv_path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar of a scored file, or None for a file scored before sidecars existed."""
    path = sidecar_path(csv_path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
