"""Golden outputs: the three evaluation callers write the same files as before they shared one recipe.

`tests/data/golden/<caller>/` holds the CSVs and records that `eval_persona` (a single run and a
sweep), the job units (`eval.grid vectors`) and `eval.multi_persona` wrote on the tiny model
before `persona.evaluation.run_evaluation` replaced their three copies of the recipe (generated
from the code of that time with PERSONA_WRITE_GOLDEN=1). Paths and dates are normalised; every
other byte must match. Multi-persona cells compare their CSVs only: their records are new.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from persona.vectors import save_vector
from tests.trait_files import short_trait_file

GOLDEN = Path(__file__).parent / "data" / "golden"
WRITE = os.environ.get("PERSONA_WRITE_GOLDEN") == "1"
COMMON = ["--max_tokens", "6", "--judge_model", "likelihood", "--no_judge_cache", "--device", "cpu"]


def _normalised(path: Path, tmp: Path, model: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        record = json.loads(text)
        record.pop("date", None)
        text = json.dumps(record, indent=1, sort_keys=True)
    text = text.replace(str(model), "<MODEL>").replace(str(tmp), "<TMP>")
    return re.sub(r"\d{4}-\d\d-\d\dT[\d:+]+", "<DATE>", text)


def _check(caller: str, root: Path, model: Path, names: list[str]) -> None:
    folder = GOLDEN / caller
    for name in names:
        got = _normalised(root / name, root.parent, model)
        golden = folder / name
        if WRITE:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(got, encoding="utf-8")
        assert golden.is_file(), f"{golden} is missing (generate it with PERSONA_WRITE_GOLDEN=1)"
        assert got == golden.read_text(encoding="utf-8"), f"{caller}: {name} differs from its golden copy"


@pytest.fixture
def vector(tiny_llama_dir, tmp_path) -> Path:
    generator = torch.Generator().manual_seed(7)
    path = tmp_path / "v.pt"
    save_vector(path, torch.randn(4, 64, generator=generator) * 3)  # 3 layers + embeddings, hidden 64
    return path


def _records(name: str) -> list[str]:
    return [name, f"{name}.settings.json", f"{name}.judge.json"]


def test_eval_persona_single_run_and_sweep_match_their_golden_files(tiny_llama_dir, vector, tmp_path):
    from eval.eval_persona import main

    trait = short_trait_file("evil", tmp_path)
    out = tmp_path / "out"
    base = ["--model", str(tiny_llama_dir), "--trait", str(trait), "--n_per_question", "1", *COMMON]
    assert main([*base, "--persona_instruction_type", "pos", "--output_path", str(out / "pos.csv")]) == 0
    sweep = ["--vector_path", str(vector), "--layer", "1", "2", "--coef", "2", "--steering_type", "all"]
    assert main([*base, "--version", "eval", *sweep, "--output_dir", str(out)]) == 0
    cells = [f"evil_steer_all_layer_{layer}_coef_2.0.csv" for layer in (1, 2)]
    _check("eval_persona", out, tiny_llama_dir, [f for name in ["pos.csv", *cells] for f in _records(name)])


def test_job_units_match_their_golden_files(tiny_llama_dir, tmp_path):
    from eval.grid import main

    out = tmp_path / "out"
    argv = ["vectors", "--model", str(tiny_llama_dir), "--traits", "evil", "--extract_dir", str(out / "extract")]
    argv += ["--vector_dir", str(out / "vectors"), "--n_per_question", "1", "--max_questions", "1", *COMMON]
    main(argv)  # the unit's evaluations land; its extraction then finds no coherent pair on a random model
    names = [f for kind in ("pos", "neg") for f in _records(f"extract/evil_{kind}_instruct.csv")]
    _check("jobs", out, tiny_llama_dir, names)


def test_multi_persona_cells_match_their_golden_files(tiny_llama_dir, tmp_path):
    from eval.multi_persona import main

    out = tmp_path / "out"
    vectors = []
    for seed in (3, 4):
        path = tmp_path / f"v{seed}.pt"
        save_vector(path, torch.randn(4, 64, generator=torch.Generator().manual_seed(seed)) * 3)
        vectors.append(str(path))
    argv = ["interference", "--model", str(tiny_llama_dir), "--traits", "evil", "pessimistic"]
    argv += ["--vector_path", *vectors, "--layer", "2", "--coef", "2", "--max_questions", "1"]
    argv += ["--n_per_question", "1", "--output_dir", str(out), *COMMON]
    assert main(argv) == 0
    _check(
        "multi_persona",
        out,
        tiny_llama_dir,
        [f"cells/{c}.csv" for c in ("baseline", "steer_evil", "steer_pessimistic")],
    )
