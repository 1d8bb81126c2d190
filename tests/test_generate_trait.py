"""data_generation.generate_trait (CLI over persona.trait_generation) end to end: the real `openai` client over
HTTP to a scripted local server."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data_generation import generate_trait as gen
from persona import llm, traits
from persona import trait_generation as tg
from persona.traits import load_trait

EVAL_PROMPT = "Judge {question} -> {answer}. Output REFUSAL or 0-100 only."


def pairs(tag: str) -> list[dict[str, str]]:
    return [{"pos": f"Be {tag} {i}.", "neg": f"Be calm {tag} {i}."} for i in range(5)]


def base_answer(tag: str, n_questions: int = 43) -> str:
    """A valid base-trait answer with a near-duplicate question (dropped) and spare questions (clipped)."""
    questions = [f"{tag} question {i}?" for i in range(n_questions)]
    questions.insert(5, f"  {tag.upper()} QUESTION 2?")
    return json.dumps({"instruction": pairs(tag), "questions": questions, "eval_prompt": EVAL_PROMPT})


class ScriptedServer:
    """`/v1/chat/completions` answering from a per-trait script; the last entry repeats. An int is an HTTP error."""

    def __init__(self, script: dict[str, list[str | int]]):
        self.script = script
        self.requests: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                trait = re.search(r"^Trait: (\S+)$", prompt, re.M)[1]
                with server._lock:
                    server.bodies.append(body)
                    n = server.requests[trait]
                    server.requests[trait] += 1
                answers = server.script[trait]
                answer = answers[min(n, len(answers) - 1)]
                if isinstance(answer, int):
                    return self._send(answer, {"error": {"message": "scripted failure", "type": "server_error"}})
                self._send(
                    200,
                    {
                        "id": "c1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def serve() -> Iterator:
    servers = []

    def start(script):
        server = ScriptedServer(script)
        threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def no_key(monkeypatch, tmp_path):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PERSONA_DOTENV", str(tmp_path / "absent.env"))


def library(tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "trait_definitions.json"
    path.write_text(json.dumps({n: f"Definition of {n}." for n in names}))
    return path


def run_cli(tmp_path: Path, url: str, *extra: str) -> int:
    return gen.main(
        [
            "--trait-definitions",
            str(tmp_path / "trait_definitions.json"),
            "--extract-dir",
            str(tmp_path / "extract"),
            "--eval-dir",
            str(tmp_path / "eval"),
            "--base-url",
            url,
            "--model",
            "test-model",
            "--max-retries",
            "3",
            "--retry-base-delay",
            "0.01",
            "--max-concurrency",
            "2",
            *extra,
        ]
    )


def test_generator_end_to_end(tmp_path, serve, no_key, capsys):
    library(tmp_path, ["calm", "bold", "grim", "calm_2", "old"])
    (tmp_path / "extract").mkdir()
    (tmp_path / "eval").mkdir()
    for folder in ("extract", "eval"):
        (tmp_path / folder / "old.json").write_text("untouched")
    server = serve(
        {
            "calm": [base_answer("calm")],
            "bold": ["Sure! Here is the JSON: {not json", base_answer("bold")],
            "grim": [500],
            "calm_2": [json.dumps({"instruction": pairs("serene")})],
        }
    )

    assert run_cli(tmp_path, server.url) == 1  # one trait failed
    out = capsys.readouterr().out

    assert server.requests == {"calm": 1, "bold": 2, "grim": 3, "calm_2": 1}
    assert all(b["model"] == "test-model" and b["response_format"] == {"type": "json_object"} for b in server.bodies)
    assert "Definition of calm_2." in next(
        b["messages"][-1]["content"] for b in server.bodies if "Trait: calm_2" in b["messages"][-1]["content"]
    )

    extract = load_trait(str(tmp_path / "extract" / "calm.json"))
    evaluate = load_trait(str(tmp_path / "eval" / "calm.json"))
    distinct = [f"calm question {i}?" for i in range(43)]  # the upper-case duplicate of #2 was dropped
    assert extract.questions == distinct[:20] and evaluate.questions == distinct[20:40]
    assert extract.instructions == [(p["pos"], p["neg"]) for p in pairs("calm")] == evaluate.instructions
    assert extract.eval_prompt == EVAL_PROMPT
    assert load_trait(str(tmp_path / "eval" / "bold.json")).questions[0] == "bold question 20?"

    variant = load_trait(str(tmp_path / "eval" / "calm_2.json"))
    assert variant.judge_column == "calm" and variant.questions == evaluate.questions
    assert variant.instructions[0] == ("Be serene 0.", "Be calm serene 0.")
    assert not (tmp_path / "extract" / "grim.json").exists() and not (tmp_path / "eval" / "grim.json").exists()
    assert (tmp_path / "eval" / "old.json").read_text() == "untouched"
    assert not [p for p in tmp_path.rglob("*.tmp")]

    lines = out.strip().splitlines()
    summary = lines[lines.index("made 3, skipped 1, failed 1") :]
    rows = {line.split()[1]: line.split(maxsplit=2)[0::2] for line in summary[1:]}
    assert rows["calm"] == ["made", "1 attempt"]
    assert rows["bold"] == ["made", "2 attempts"]
    assert rows["calm_2"] == ["made", "1 attempt"]
    assert rows["old"] == ["skipped", "files exist (pass `overwrite` to regenerate)"]
    assert rows["grim"][0] == "failed" and rows["grim"][1].startswith("3 attempts; InternalServerError")
    assert [line.split()[1] for line in summary[1:]] == ["calm", "bold", "grim", "calm_2", "old"]


def test_rerun_skips_and_overwrite_regenerates(tmp_path, serve, no_key, capsys):
    library(tmp_path, ["calm"])
    server = serve({"calm": [base_answer("calm")]})
    assert run_cli(tmp_path, server.url) == 0
    assert run_cli(tmp_path, server.url, "--traits", "calm") == 0
    assert server.requests["calm"] == 1
    assert run_cli(tmp_path, server.url, "--overwrite") == 0
    assert server.requests["calm"] == 2
    out = capsys.readouterr().out
    assert out.count("made 1, skipped 0, failed 0") == 2 and "made 0, skipped 1, failed 0" in out


def test_variant_without_base_fails_without_asking(tmp_path, serve, no_key, capsys):
    library(tmp_path, ["calm_2"])
    server = serve({"calm_2": [json.dumps({"instruction": pairs("serene")})]})
    assert run_cli(tmp_path, server.url) == 1
    assert server.requests["calm_2"] == 0
    assert "base trait 'calm' has no valid artifacts" in capsys.readouterr().out


@pytest.mark.parametrize(
    "answer,message",
    [
        ("", "empty answer"),
        ("[1, 2]", "answer is JSON list, expected an object"),
        ("```json\n" + base_answer("x", n_questions=30) + "\n```", "has 30 distinct questions, need 40"),
        (base_answer("x").replace("{answer}", "{reply}"), "exactly the placeholders {question} and {answer}"),
        (
            json.dumps(
                {"instruction": pairs("x")[:4], "questions": [f"q{i}" for i in range(40)], "eval_prompt": EVAL_PROMPT}
            ),
            "field 'instruction': expected a list of 5",
        ),
    ],
)
def test_bad_answers_are_rejected(answer, message):
    with pytest.raises(llm.InvalidAnswerError, match=re.escape(message)):
        tg.base_artifacts(llm.parse_json_answer(answer), "x")


def test_fenced_answer_is_accepted():
    artifacts = tg.base_artifacts(llm.parse_json_answer("```json\n" + base_answer("x") + "\n```"), "x")
    assert len(artifacts["extract"]["questions"]) == len(artifacts["eval"]["questions"]) == traits.N_QUESTIONS


def exit_code(argv: list[str]) -> int:
    """The exit status of the command line (main runs under persona.cli.run_cli)."""
    from persona.cli import run_cli as run

    with pytest.raises(SystemExit) as exit_info:
        run(lambda: gen.main(argv))
    return int(exit_info.value.code)


def test_missing_api_key_is_one_line_error(tmp_path, no_key, capsys):
    library(tmp_path, ["calm"])
    code = exit_code(
        [
            "--trait-definitions",
            str(tmp_path / "trait_definitions.json"),
            "--extract-dir",
            str(tmp_path / "x"),
            "--eval-dir",
            str(tmp_path / "e"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "OPENAI_API_KEY is not set" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_unknown_trait_is_reported(tmp_path, no_key, capsys):
    library(tmp_path, ["calm"])
    assert exit_code(["--trait-definitions", str(tmp_path / "trait_definitions.json"), "--traits", "brave"]) == 2
    assert "no definition for ['brave']; defined: calm" in capsys.readouterr().err


def test_client_errors_are_not_retried(tmp_path, serve, no_key, capsys):
    library(tmp_path, ["calm"])
    server = serve({"calm": [400, base_answer("calm")]})
    assert run_cli(tmp_path, server.url) == 1
    assert server.requests["calm"] == 1
    assert "failed   calm  1 attempt; BadRequestError" in capsys.readouterr().out
