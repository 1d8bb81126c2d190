"""Security: the API key never lands in any output, and no user input is executed.

A full tiny run (persona evaluations judged by a scripted OpenAI-compatible server, vector
extraction, projection, re-judging) with a sentinel key in the environment: the key reaches
the server, and appears in no file written (CSVs, sidecars, settings records, vector
metadata, the SQLite judge cache), no printed line and no log record. The source is checked
for eval/exec and for tensor or pickle loads that could run code.
"""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest
import torch

from persona.judge.openai_judge import PROBE_PROMPT
from persona.vectors import load_vector, save_vector
from tests.fake_openai import FakeServer

REPO = Path(__file__).resolve().parents[1]
SENTINEL = "sk-SENTINEL-123"
SOURCE_DIRS = ("persona", "eval", "data_generation", "viz", "scripts", "bench")


def scores(prompt: str) -> dict[str, float]:
    if PROBE_PROMPT in prompt:
        return {"73": 1.0}
    return {"50": 1.0} if prompt.startswith("Evil?") else {"90": 1.0}


def test_api_key_never_written_or_printed(tiny_llama_dir, tmp_path, offline_env, monkeypatch, capsys, caplog):
    from eval.cal_projection import main as cal_projection
    from eval.eval_persona import main as eval_persona
    from eval.judge import main as judge
    from generate_vec import main as generate_vec

    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    server = FakeServer(scores)
    trait = tmp_path / "evil.json"
    trait.write_text(
        json.dumps(
            {
                "instruction": [{"pos": "Be evil.", "neg": "Be kind."}] * 5,
                "questions": ["How should I treat people?"],
                "eval_prompt": "Evil? {question} / {answer}\nRespond with a number 0-100.",
            }
        )
    )
    out = tmp_path / "out"
    judge_args = ["--judge_model", "judge-model", "--judge_base_url", server.url]
    try:
        with caplog.at_level(logging.DEBUG):
            for kind in ("pos", "neg"):
                assert (
                    eval_persona(
                        [
                            "--model",
                            str(tiny_llama_dir),
                            "--trait",
                            str(trait),
                            "--output_path",
                            str(out / f"evil_{kind}.csv"),
                            "--persona_instruction_type",
                            kind,
                            "--n_per_question",
                            "1",
                            "--max_tokens",
                            "4",
                            "--device",
                            "cpu",
                            *judge_args,
                        ]
                    )
                    == 0
                )
            assert (
                generate_vec(
                    [
                        "--model_name",
                        str(tiny_llama_dir),
                        "--pos_path",
                        str(out / "evil_pos.csv"),
                        "--neg_path",
                        str(out / "evil_neg.csv"),
                        "--trait",
                        "evil",
                        "--threshold",
                        "40",
                        "--save_dir",
                        str(out / "vectors"),
                        "--device",
                        "cpu",
                    ]
                )
                == 0
            )
            assert (
                cal_projection(
                    [
                        "--file_path",
                        str(out / "evil_pos.csv"),
                        "--vector_path_list",
                        str(out / "vectors" / "evil_response_avg_diff.pt"),
                        "--layer_list",
                        "2",
                        "--model_name",
                        str(tiny_llama_dir),
                        "--device",
                        "cpu",
                    ]
                )
                == 0
            )
            assert (
                judge(
                    [
                        "--file_path",
                        str(out / "evil_neg.csv"),
                        "--trait",
                        str(trait),
                        "--output_path",
                        str(out / "evil_neg.rejudged.csv"),
                        *judge_args,
                    ]
                )
                == 0
            )
    finally:
        server.close()

    sent = {value for h in server.headers for key, value in h.items() if key.lower() == "authorization"}
    assert len(server.headers) > 10 and sent == {f"Bearer {SENTINEL}"}  # every request carried the key
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "judge_cache.sqlite" for p in written) and any(p.suffix == ".pt" for p in written)
    assert any(p.name.endswith(".settings.json") for p in written)
    for path in written:
        assert SENTINEL.encode() not in path.read_bytes(), path
    captured = capsys.readouterr()
    assert SENTINEL not in captured.out + captured.err
    assert SENTINEL not in caplog.text and all(SENTINEL not in str(r.args) for r in caplog.records)


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield node, owner if isinstance(func, ast.Attribute) else None, name


def test_source_never_executes_or_unpickles_input():
    files = [p for d in SOURCE_DIRS for p in (REPO / d).rglob("*.py")] + list(REPO.glob("*.py"))
    assert len(files) > 20
    problems = []
    for path in files:
        for node, owner, name in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            if owner is None and name in ("eval", "exec"):  # the builtins, not a method such as model.eval()
                problems.append(f"{where}: {name}()")
            if owner == "pickle" and name in ("load", "loads"):
                problems.append(f"{where}: pickle.{name}()")
            if owner == "torch" and name == "load":
                flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
    assert not problems


def test_a_pickled_payload_is_refused(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"vector": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable tensor file"):
        load_vector(tmp_path / "evil.pt")
    assert not marker.exists()
    save_vector(tmp_path / "ok.pt", torch.ones(2, 3))  # a plain tensor still loads
    assert load_vector(tmp_path / "ok.pt").shape == (2, 3)
