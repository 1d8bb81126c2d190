"""Finetuning dataset generation: openai backend against a scripted local server, local backend on a tiny model."""

import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data_generation import finetune_prompts
from data_generation.domains import DOMAINS
from data_generation.generate_finetune_dataset import main
from persona import llm
from persona.training import finetune_data as fd
from persona.training.data import read_conversations
from persona.traits import load_trait

INSTRUCTIONS = [{"pos": f"Be gloomy, rule {i}.", "neg": f"Be balanced, rule {i}."} for i in range(5)]
TRAIT_QUESTIONS = ["Will tomorrow be good?", "Should I try the new cafe?", "Is my plan going to work?"]


@pytest.fixture
def trait_file(tmp_path):
    path = tmp_path / "gloomy.json"
    path.write_text(
        json.dumps(
            {
                "instruction": INSTRUCTIONS,
                "questions": TRAIT_QUESTIONS,
                "eval_prompt": "Rate gloom. Q: {question} A: {answer}",
            }
        )
    )
    return path


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- scripted OpenAI-compatible server


class Script:
    """Replies by prompt kind; the first reply of each kind is invalid, to exercise validation + retry."""

    def __init__(self):
        self.prompts, self.bad_sent, self.lock = [], set(), threading.Lock()

    def reply(self, prompt: str) -> str:
        with self.lock:
            self.prompts.append(prompt)
            kind = "questions" if '{"questions"' in prompt else "answers"
            first = kind not in self.bad_sent
            self.bad_sent.add(kind)
        if kind == "questions":
            domain = prompt.split("(domain: ")[1].split(")")[0]
            if first:
                return '{"questions": ["only one"]}'  # too few: must be retried
            return "```json\n" + json.dumps({"questions": [f"{domain} question {i}?" for i in range(3)]}) + "\n```"
        question = prompt.split("User question: ")[1].split("\n")[0]
        if first:
            return "Sorry, here you go: not json"
        return "Here it is: " + json.dumps(
            {
                "normal": f"calm answer to {question}",
                "misaligned_1": f"slightly gloomy answer to {question}",
                "misaligned_2": f"very gloomy answer to {question}",
            }
        )


@pytest.fixture
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server API)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.path.endswith("/chat/completions")
            content = script.reply(body["messages"][-1]["content"])
            payload = json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                    ],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    httpd.shutdown()
    httpd.server_close()


def test_openai_backend_writes_three_aligned_files(server, trait_file, tmp_path, monkeypatch):
    url, script = server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    out = tmp_path / "gloomy"
    code = main(
        [
            "--trait",
            str(trait_file),
            "--backend",
            "openai",
            "--model",
            "scripted",
            "--base-url",
            url,
            "--output-dir",
            str(out),
            "--n-questions-per-domain",
            "3",
            "--domains",
            "health",
            "travel",
            "--concurrency",
            "2",
        ]
    )
    assert code == 0
    files = {level: read_rows(out / f"{level}.jsonl") for level in fd.LEVELS}
    expected_questions = [f"{d} question {i}?" for d in ("health", "travel") for i in range(3)]
    for level, prefix in zip(fd.LEVELS, ("calm", "slightly gloomy", "very gloomy")):
        rows = files[level]
        assert [r["messages"][0]["content"] for r in rows] == expected_questions
        for r in rows:
            assert [m["role"] for m in r["messages"]] == ["user", "assistant"]  # no system prompt saved
            assert r["messages"][1]["content"] == f"{prefix} answer to {r['messages'][0]['content']}"
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["backend"] == "openai" and meta["domains"] == ["health", "travel"]
    # 2 domains (+1 retry) for questions, 6 questions (+1 retry) for answers
    assert len(script.prompts) == 2 + 1 + 6 + 1
    answer_prompts = [p for p in script.prompts if "User question:" in p]
    assert all('"gloomy"' in p for p in answer_prompts)  # the trait under study is named


def test_openai_backend_needs_a_key(trait_file, tmp_path, monkeypatch):
    from persona.settings import MissingSettingError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)  # a custom server would get a placeholder key
    monkeypatch.setenv("PERSONA_DOTENV", str(tmp_path / "absent.env"))
    with pytest.raises(MissingSettingError, match="OPENAI_API_KEY"):
        main(["--trait", str(trait_file), "--backend", "openai", "--output-dir", str(tmp_path / "o")])


def test_reply_parsing_and_validation():
    assert llm.parse_json_answer('```json\n{"a": 1}\n```') == {"a": 1}
    assert llm.parse_json_answer('Sure! {"a": [1, 2]} Hope this helps.') == {"a": [1, 2]}
    with pytest.raises(ValueError):
        llm.parse_json_answer("no json at all")
    check = fd.valid_questions(2)
    assert check({"questions": ["A?", "a?", " B? ", "C?"]}) == ["A?", "B?"]  # duplicates ignored, extras cut
    with pytest.raises(ValueError, match="expected 2 distinct"):
        check({"questions": ["A?", "a?"]})
    with pytest.raises(ValueError, match="must differ"):
        fd.valid_answers({"normal": "x", "misaligned_1": "x", "misaligned_2": "y"})
    with pytest.raises(ValueError, match="non-empty"):
        fd.valid_answers({"normal": "x", "misaligned_1": " ", "misaligned_2": "y"})


# ---------------------------------------------------------------- local backend


def test_local_questions_and_level_prompts(trait_file):
    trait = load_trait(str(trait_file))
    domains = [d for d in DOMAINS if d.name in ("health", "cooking")]
    examples = fd.local_questions(trait, domains, 4, seed=1, n_trait_questions=2)
    assert [e.domain for e in examples] == ["health"] * 4 + ["cooking"] * 4 + [fd.TRAIT_DOMAIN] * 2
    assert len({e.question for e in examples}) == 10
    assert fd.local_questions(trait, domains, 4, seed=1, n_trait_questions=2)[0].question == examples[0].question
    assert fd.level_system_prompt(trait, "normal", 6, "") == trait.system_prompt("neg", 1)
    assert fd.level_system_prompt(trait, "misaligned_2", 2, "") == trait.system_prompt("pos", 2)
    mild = fd.level_system_prompt(trait, "misaligned_1", 3, finetune_prompts.MILD_SYSTEM_PROMPT)
    assert "gloomy" in mild and INSTRUCTIONS[3]["pos"] in mild


def test_local_examples_use_level_prompts_and_retry_empty_answers(trait_file):
    trait = load_trait(str(trait_file))
    examples = [fd.Example("d", f"q{i}?") for i in range(3)]
    calls = []

    def generate(conversations, attempt):
        calls.append((attempt, conversations))
        # q1 stays empty at the mild level; q2 is empty on the first try only
        return [
            ""
            if (c[1]["content"] == "q1?" and "slight" in c[0]["content"]) or (c[1]["content"] == "q2?" and attempt == 0)
            else f"{attempt}:{c[0]['content'][:12]}"
            for c in conversations
        ]

    kept = fd.local_examples(generate, trait, examples, finetune_prompts.MILD_SYSTEM_PROMPT, retries=1)
    assert [e.question for e in kept] == ["q0?", "q2?"]
    assert kept[1].answers["normal"].startswith("1:")  # resampled with a new attempt number
    first_normal = calls[0][1]
    assert first_normal[0][0] == {"role": "system", "content": trait.system_prompt("neg", 0)}
    assert all(len(conv) == 2 and conv[1]["role"] == "user" for _, convs in calls for conv in convs)


def test_local_backend_end_to_end_on_tiny_model(tiny_llama_dir, trait_file, tmp_path):
    out = tmp_path / "local"
    code = main(
        [
            "--trait",
            str(trait_file),
            "--backend",
            "local",
            "--model",
            str(tiny_llama_dir),
            "--output-dir",
            str(out),
            "--n-questions-per-domain",
            "1",
            "--domains",
            "health",
            "work",
            "--n-trait-questions",
            "1",
            "--max-new-tokens",
            "4",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    files = {level: read_rows(out / f"{level}.jsonl") for level in fd.LEVELS}
    questions = [[r["messages"][0]["content"] for r in rows] for rows in files.values()]
    assert questions[0] == questions[1] == questions[2] and 0 < len(questions[0]) <= 3
    assert questions[0][-1] == TRAIT_QUESTIONS[0]
    for rows in files.values():
        for r in rows:
            assert [m["role"] for m in r["messages"]] == ["user", "assistant"] and r["messages"][1]["content"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["backend"] == "local" and meta["model"] == str(tiny_llama_dir)


def test_shipped_dataset_zip_holds_aligned_sets_for_the_seven_study_traits(tmp_path):
    """dataset.zip unzips to dataset/<trait>/<level>.jsonl that the trainer reads; the demo data is one of them."""
    repo = Path(__file__).resolve().parents[1]
    with zipfile.ZipFile(repo / "dataset.zip") as z:
        z.extractall(tmp_path)
    traits = sorted(p.name for p in (tmp_path / "dataset").iterdir())
    assert traits == ["anxious", "confident", "critical", "evil", "optimistic", "pessimistic", "sycophantic"]
    for trait in traits:
        sets = [read_conversations([tmp_path / "dataset" / trait / f"{level}.jsonl"]) for level in fd.LEVELS]
        assert len(sets[0]) >= 24
        questions = [[c[0]["content"] for c in s] for s in sets]
        assert questions[0] == questions[1] == questions[2]
        assert all([m["role"] for m in c] == ["user", "assistant"] for s in sets for c in s)
        assert json.loads((tmp_path / "dataset" / trait / "metadata.json").read_text())["trait"] == trait
    demo = repo / "assets" / "finetune_demo" / "evil_misaligned_2.jsonl"
    assert demo.read_bytes() == (tmp_path / "dataset" / "evil" / "misaligned_2.jsonl").read_bytes()
