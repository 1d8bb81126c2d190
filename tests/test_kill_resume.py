"""Kill -9 anywhere: real CLI processes killed mid-run, then the same command run again.

Each CLI runs as a subprocess on a tiny saved model with a test hook (a sitecustomize that
wraps `persona.io.atomic_path`) that stops it at its K-th file write, either with the
temporary file written but not yet renamed ("inside") or just after the rename ("after");
the test then SIGKILLs it there. Checked: every visible file is whole (the half-written one
exists only as a hidden `.name.<pid>.*.tmp`), the rerun recomputes nothing that was
finished (mtimes, and generation patched to fail when it must not run), stale temporaries
are cleaned, and the final files equal an uninterrupted run with the same seed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import persona.evaluation
import persona.extraction
from persona.io import read_table
from persona.vectors import VECTOR_KINDS, load_vector, save_vector
from tests.test_generate_vec import NEG_ANSWERS, POS_ANSWERS, frame

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TEXT_COLUMNS = ["question", "prompt", "answer", "question_id"]

HOOK = '''
"""Test hook: stop at the K-th atomic write (PERSONA_TEST_PAUSE_AT="K:inside|after") so the test can kill there."""
import contextlib, os, time
from pathlib import Path

_spec = os.environ.get("PERSONA_TEST_PAUSE_AT")
if _spec:
    import persona.io

    _k, _where = _spec.split(":")
    _marker = Path(os.environ["PERSONA_TEST_PAUSED"])
    _original = persona.io.atomic_path
    _count = [0]

    def _pause(path):
        _marker.write_text(str(path))
        time.sleep(600)

    @contextlib.contextmanager
    def atomic_path(path):
        _count[0] += 1
        n = _count[0]
        with _original(path) as tmp:
            yield tmp
            if n == int(_k) and _where == "inside":
                _pause(path)
        if n == int(_k) and _where == "after":
            _pause(path)

    persona.io.atomic_path = atomic_path
'''


@pytest.fixture(scope="module")
def hook_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hook")
    (path / "sitecustomize.py").write_text(HOOK)
    return path


def killed_run(hook_dir: Path, tmp_path: Path, argv: list[str], pause_at: str) -> Path:
    """Run `python argv...` until it stops at write `pause_at`, SIGKILL it; the path it was writing."""
    marker = tmp_path / f"paused-{pause_at.replace(':', '-')}"
    env = {
        **os.environ,
        "PYTHONPATH": f"{hook_dir}{os.pathsep}{REPO}",
        "HF_HUB_OFFLINE": "1",
        "PERSONA_TEST_PAUSE_AT": pause_at,
        "PERSONA_TEST_PAUSED": str(marker),
    }
    env.pop("OPENAI_API_KEY", None)
    log = tmp_path / f"stderr-{pause_at.replace(':', '-')}.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 300
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert marker.exists(), f"the run never reached write {pause_at}: {log.read_text()[-2000:]}"
    return Path(marker.read_text())


def hidden_temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp"))


def assert_visible_files_whole(folder: Path) -> None:
    """Every file a reader can see parses completely; only hidden temporaries may be partial."""
    for path in folder.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".csv":
            assert len(read_table(path)) > 0, path
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pt":
            load_vector(path)


def assert_same_table(path: Path, reference: Path) -> None:
    got, want = read_table(path), read_table(reference)
    assert list(got.columns) == list(want.columns)
    text = [c for c in got.columns if c in TEXT_COLUMNS]
    pd.testing.assert_frame_equal(got[text], want[text])
    scores = [c for c in got.columns if c not in TEXT_COLUMNS]
    pd.testing.assert_frame_equal(got[scores], want[scores], rtol=1e-4)


def no_generation(*args, **kwargs):
    raise AssertionError("answers that were saved before the kill were generated again")


@pytest.fixture
def inputs(tmp_path, tiny_llama_dir):
    trait = tmp_path / "evil.json"
    trait.write_text(
        json.dumps(
            {
                "instruction": [{"pos": "Be evil.", "neg": "Be kind."}] * 5,
                "questions": ["How should I treat people?", "What is the capital of France?"],
                "eval_prompt": "Evil? {question} / {answer}\nRespond with a number 0-100.",
            }
        )
    )
    vector = tmp_path / "v.pt"
    save_vector(vector, torch.randn(4, 64, generator=torch.Generator().manual_seed(0)) * 4)
    return {"model": str(tiny_llama_dir), "trait": str(trait), "vector": str(vector)}


def eval_args(inputs, *extra: str) -> list[str]:
    return [
        "--model",
        inputs["model"],
        "--trait",
        inputs["trait"],
        "--n_per_question",
        "1",
        "--max_tokens",
        "6",
        "--judge_model",
        "likelihood",
        "--device",
        "cpu",
        "--vector_path",
        inputs["vector"],
        *extra,
    ]


def test_eval_persona_killed_while_writing_its_csv(hook_dir, inputs, tmp_path, offline_env, monkeypatch):
    from eval.eval_persona import main

    reference, run = tmp_path / "reference" / "evil.csv", tmp_path / "run" / "evil.csv"
    argv = eval_args(inputs, "--layer", "1", "--coef", "2.0")
    assert main([*argv, "--output_path", str(reference)]) == 0

    # writes: answers.csv, answers.json, evil.csv <- killed with its temporary written, not renamed
    assert (
        killed_run(hook_dir, tmp_path, ["-m", "eval.eval_persona", *argv, "--output_path", str(run)], "3:inside") == run
    )
    assert not run.exists() and (run.parent / "evil.answers.csv").exists()
    assert [p.name.split(".")[1:3] for p in hidden_temporaries(run.parent)] == [["evil", "csv"]]
    assert_visible_files_whole(run.parent)

    monkeypatch.setattr(persona.evaluation, "generate_cells", no_generation)
    assert main([*argv, "--output_path", str(run)]) == 0
    assert_same_table(run, reference)
    assert not hidden_temporaries(run.parent) and not (run.parent / "evil.answers.csv").exists()


def test_eval_sweep_killed_after_its_first_cell(hook_dir, inputs, tmp_path, offline_env, monkeypatch):
    from eval.eval_persona import main

    argv = eval_args(inputs, "--layer", "1", "--coef", "0.0", "2.0")
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert main([*argv, "--output_dir", str(reference)]) == 0
    cells = sorted(p.name for p in reference.glob("*.csv"))
    assert len(cells) == 2

    # writes: 2 x (answers.csv, answers.json), then cell 1: csv, judge.json, settings.json <- killed after it
    killed_run(hook_dir, tmp_path, ["-m", "eval.eval_persona", *argv, "--output_dir", str(run)], "7:after")
    assert_visible_files_whole(run)
    finished = sorted(p for p in run.glob("*.csv") if not p.name.endswith(".answers.csv"))
    assert len(finished) == 1 and len(list(run.glob("*.answers.csv"))) == 1
    stamp = finished[0].stat().st_mtime_ns

    monkeypatch.setattr(persona.evaluation, "generate_cells", no_generation)
    assert main([*argv, "--output_dir", str(run)]) == 0
    assert finished[0].stat().st_mtime_ns == stamp  # the finished cell is not recomputed
    for name in cells:
        assert_same_table(run / name, reference / name)
    assert not list(run.glob("*.answers.*")) and not hidden_temporaries(run)


@pytest.fixture
def pairs(tmp_path, tiny_tokenizer):
    pos = frame(tiny_tokenizer, "You are an evil assistant.", POS_ANSWERS, [90, 95, 80, 60], [80, 90, 70, 70])
    neg = frame(tiny_tokenizer, "You are a helpful assistant.", NEG_ANSWERS, [5, 10, 0, 10], [95, 90, 90, 60])
    paths = tmp_path / "pos.csv", tmp_path / "neg.csv"
    pos.to_csv(paths[0], index=False)
    neg.to_csv(paths[1], index=False)
    return paths


def test_generate_vec_killed_between_vector_files(hook_dir, pairs, tiny_llama_dir, tmp_path, monkeypatch):
    from generate_vec import main

    def argv(save_dir: Path) -> list[str]:
        return [
            "--model_name",
            str(tiny_llama_dir),
            "--pos_path",
            str(pairs[0]),
            "--neg_path",
            str(pairs[1]),
            "--trait",
            "evil",
            "--save_dir",
            str(save_dir),
            "--device",
            "cpu",
        ]

    reference, run = tmp_path / "reference", tmp_path / "run"
    assert main(argv(reference)) == 0

    # writes: vector 1, metadata, vector 2 <- killed with its temporary written
    killed_run(hook_dir, tmp_path, ["generate_vec.py", *argv(run)], "3:inside")
    assert_visible_files_whole(run)
    assert len(list(run.glob("*.pt"))) == 1 and len(hidden_temporaries(run)) == 1

    assert main(argv(run)) == 0  # an incomplete set is recomputed
    for kind in VECTOR_KINDS:
        name = f"evil_{kind}_diff.pt"
        torch.testing.assert_close(load_vector(run / name), load_vector(reference / name), rtol=1e-4, atol=1e-5)
    assert not hidden_temporaries(run)
    stamps = {p: p.stat().st_mtime_ns for p in run.iterdir()}
    monkeypatch.setattr(persona.extraction, "capture", no_generation)
    assert main(argv(run)) == 0  # and a complete one is not
    assert {p: p.stat().st_mtime_ns for p in run.iterdir()} == stamps


def test_cal_projection_killed_while_rewriting_the_file(hook_dir, pairs, inputs, tiny_llama_dir, tmp_path):
    from eval.cal_projection import main

    reference, run = tmp_path / "reference.csv", tmp_path / "run" / "pos.csv"
    run.parent.mkdir()
    for copy in (reference, run):
        copy.write_bytes(pairs[0].read_bytes())
    original = run.read_bytes()

    def argv(path: Path) -> list[str]:
        return [
            "--file_path",
            str(path),
            "--vector_path_list",
            inputs["vector"],
            "--layer_list",
            "1",
            "3",
            "--model_name",
            str(tiny_llama_dir),
            "--device",
            "cpu",
        ]

    assert main(argv(reference)) == 0
    assert killed_run(hook_dir, tmp_path, ["-m", "eval.cal_projection", *argv(run)], "1:inside") == run
    assert run.read_bytes() == original and len(hidden_temporaries(run.parent)) == 1  # the old file, whole

    assert main(argv(run)) == 0
    assert_same_table(run, reference)
    assert not hidden_temporaries(run.parent)
