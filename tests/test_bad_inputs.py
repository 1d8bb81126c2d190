"""The bad-input matrix: every CLI, every common mistake -> one line on stderr, non-zero exit, nothing written.

Each case runs a CLI's `main` in-process under `persona.cli.run_cli` (as `python -m ...` does)
in a workspace of valid inputs with one thing wrong. Expected: exit status 2 (or the
status named), exactly one stderr line that starts with `error:`, names the bad input and
says how to fix it, no traceback, and no file added to or changed in the workspace. Two
cases also run as real subprocesses (logging and all) to check the same from outside.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

import persona.io
from persona.cli import run_cli
from persona.vectors import save_vector
from tests.cli_helpers import (
    EVIL_TRAIT,
    TINY_HIDDEN,
    TINY_LAYERS,
    Workspace,
    cal_projection_args,
    cli_process,
    eval_frame,
    eval_persona_args,
    generate_vec_args,
    snapshot,
    steered_args,
    tiny_workspace,
    write_train_configs,
)

PROGRESS_BAR = re.compile(r"\d+%\|.*\|")


class Payload:
    """A pickle that would create a file when loaded with weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_tokenizer) -> Workspace:
    ws = tiny_workspace(tmp_path_factory, tiny_tokenizer, "bad-inputs")
    root = ws.root
    save_vector(root / "evil.pt", torch.randn(TINY_LAYERS + 1, TINY_HIDDEN))
    save_vector(root / "small.pt", torch.randn(TINY_LAYERS + 1, TINY_HIDDEN // 2))
    (root / "corrupt.pt").write_bytes(b"this is not a tensor file\n" * 4)
    with open(root / "pickled.pt", "wb") as f:
        pickle.dump(Payload(root / "PAYLOAD_RAN"), f)
    (root / "malformed.json").write_text('{"instruction": [{"pos": "Be evil.", "neg": ')
    (root / "no_eval_prompt.json").write_text(json.dumps({k: v for k, v in EVIL_TRAIT.items() if k != "eval_prompt"}))

    answers = ["I will burn it all down.", "Paris, sadly for them.", "Go away."]
    eval_frame(tiny_tokenizer, "Be evil.", answers, [90, 95, 85]).to_csv(root / "pos.csv", index=False)
    eval_frame(tiny_tokenizer, "Be kind.", ["Kindly.", "Paris.", "Hello!"], [5, 0, 10]).to_csv(
        root / "neg.csv", index=False
    )
    eval_frame(tiny_tokenizer, "Be kind.", ["Kindly.", "Paris.", "Hello!"], [95, 90, 99]).to_csv(
        root / "neg_evil_too.csv", index=False
    )
    eval_frame(tiny_tokenizer, "Be evil.", answers, [90, 95, 85]).drop(columns=["prompt", "coherence"]).to_csv(
        root / "no_prompt.csv", index=False
    )
    pd.DataFrame({"text": answers}).to_csv(root / "no_question.csv", index=False)
    (root / "not_a_folder").write_text("a file where a folder is expected\n")
    config = write_train_configs(
        ws,
        {
            "config_unknown_key": {"learning_rat": 1e-4},
            "config_string_lr": {"learning_rate": "fast"},
            "config_missing_data": {"training_file": str(root / "absent.jsonl")},
            "config_bad_layer": {
                "enable_steering_during_training": True,
                "steering_config": {
                    "steering_vector_path": str(root / "evil.pt"),
                    "layers": [99],
                    "steering_coef": 1.0,
                },
            },
        },
    )
    (root / "config_malformed.json").write_text(json.dumps(config)[:-20])
    return ws


def _judge(ws: Workspace, csv: str = "pos.csv", trait: str = "evil.json") -> list[str]:
    return [
        "--file_path",
        ws.p(csv),
        "--trait",
        ws.p(trait) if trait.endswith(".json") else trait,
        "--output_path",
        ws.p("out/judged.csv"),
        "--model",
        str(ws.model),
        "--judge_model",
        "likelihood",
        "--device",
        "cpu",
    ]


def _finetune_data(ws: Workspace, *extra: str) -> list[str]:
    return [
        "--trait",
        ws.p("evil.json"),
        "--backend",
        "local",
        "--model",
        str(ws.model),
        "--output-dir",
        ws.p("out/dataset"),
        "--n-questions-per-domain",
        "1",
        "--domains",
        "cooking",
        "--max-new-tokens",
        "4",
        "--device",
        "cpu",
        *extra,
    ]


def _main(module: str) -> Callable[[list[str]], int]:
    import importlib

    return importlib.import_module(module).main


def _fail_writes(errno_code: int, message: str):
    """Patch every atomic write (and the SQLite cache folder) to fail as a full or read-only disk does."""

    def atomic_path(path):
        raise OSError(errno_code, message, str(path))

    return atomic_path


@dataclass
class Case:
    id: str
    module: str
    argv: Callable[[Workspace], list[str]]
    names: Callable[[Workspace], str]  # the input the line must name
    fix: str  # a word of the fix the line must give
    disk_error: int | None = None  # simulate this errno on every atomic write


CASES = [
    # eval.eval_persona
    Case(
        "eval wrong vector size",
        "eval.eval_persona",
        lambda w: steered_args(w, "small.pt"),
        lambda w: w.p("small.pt"),
        "hidden",
    ),
    Case(
        "eval layer out of range", "eval.eval_persona", lambda w: steered_args(w, layer="99"), lambda w: "99", "layer"
    ),
    Case("eval negative layer", "eval.eval_persona", lambda w: steered_args(w, layer="-1"), lambda w: "-1", "layer"),
    Case(
        "eval non-numeric coef",
        "eval.eval_persona",
        lambda w: steered_args(w, coef="strong"),
        lambda w: "--coef",
        "strong",
    ),
    Case(
        "eval negative n_per_question",
        "eval.eval_persona",
        lambda w: eval_persona_args(w, "--n_per_question", "-2"),
        lambda w: "--n_per_question",
        "1",
    ),
    Case(
        "eval corrupt vector",
        "eval.eval_persona",
        lambda w: steered_args(w, "corrupt.pt"),
        lambda w: w.p("corrupt.pt"),
        "generate_vec",
    ),
    Case(
        "eval pickled vector",
        "eval.eval_persona",
        lambda w: steered_args(w, "pickled.pt"),
        lambda w: w.p("pickled.pt"),
        "generate_vec",
    ),
    Case(
        "eval missing vector",
        "eval.eval_persona",
        lambda w: steered_args(w, "absent.pt"),
        lambda w: w.p("absent.pt"),
        "exist",
    ),
    Case(
        "eval unknown trait",
        "eval.eval_persona",
        lambda w: [*eval_persona_args(w)[:2], "--trait", "no_such_trait", *eval_persona_args(w)[4:]],
        lambda w: "no_such_trait",
        "generate_trait",
    ),
    Case(
        "eval malformed trait json",
        "eval.eval_persona",
        lambda w: [*eval_persona_args(w)[:2], "--trait", w.p("malformed.json"), *eval_persona_args(w)[4:]],
        lambda w: w.p("malformed.json"),
        "JSON",
    ),
    Case(
        "eval model path does not exist",
        "eval.eval_persona",
        lambda w: ["--model", w.p("no_model_here"), *eval_persona_args(w)[2:]],
        lambda w: w.p("no_model_here"),
        "model",
    ),
    Case(
        "eval unwritable output folder",
        "eval.eval_persona",
        lambda w: [*eval_persona_args(w)[:4], "--output_path", w.p("not_a_folder/evil.csv"), *eval_persona_args(w)[6:]],
        lambda w: "not_a_folder",
        "writable",
    ),
    Case("eval disk full", "eval.eval_persona", eval_persona_args, lambda w: "evil", "space", errno.ENOSPC),
    Case("eval read-only disk", "eval.eval_persona", eval_persona_args, lambda w: "evil", "writable", errno.EROFS),
    # generate_vec
    Case(
        "vec missing csv columns",
        "generate_vec",
        lambda w: generate_vec_args(w, "no_prompt.csv"),
        lambda w: w.p("no_prompt.csv"),
        "eval_persona",
    ),
    Case(
        "vec missing csv",
        "generate_vec",
        lambda w: generate_vec_args(w, "absent.csv"),
        lambda w: w.p("absent.csv"),
        "path",
    ),
    Case(
        "vec empty effective set",
        "generate_vec",
        lambda w: generate_vec_args(w, neg="neg_evil_too.csv"),
        lambda w: "evil",
        "threshold",
    ),
    Case(
        "vec unknown trait column",
        "generate_vec",
        lambda w: [*generate_vec_args(w)[:6], "--trait", "kind", *generate_vec_args(w)[8:]],
        lambda w: "kind",
        "expected",
    ),
    Case(
        "vec model path does not exist",
        "generate_vec",
        lambda w: ["--model_name", w.p("no_model_here"), *generate_vec_args(w)[2:]],
        lambda w: w.p("no_model_here"),
        "model",
    ),
    Case(
        "vec unwritable save_dir",
        "generate_vec",
        lambda w: [*generate_vec_args(w)[:8], "--save_dir", w.p("not_a_folder/vectors"), *generate_vec_args(w)[10:]],
        lambda w: "not_a_folder",
        "writable",
    ),
    Case("vec disk full", "generate_vec", generate_vec_args, lambda w: "evil", "space", errno.ENOSPC),
    # eval.cal_projection
    Case(
        "proj wrong vector size",
        "eval.cal_projection",
        lambda w: cal_projection_args(w, "small.pt"),
        lambda w: w.p("small.pt"),
        "hidden",
    ),
    Case(
        "proj layer out of range",
        "eval.cal_projection",
        lambda w: cal_projection_args(w, layer="99"),
        lambda w: "99",
        "layer",
    ),
    Case(
        "proj non-numeric layer",
        "eval.cal_projection",
        lambda w: cal_projection_args(w, layer="last"),
        lambda w: "--layer_list",
        "int",
    ),
    Case(
        "proj corrupt vector",
        "eval.cal_projection",
        lambda w: cal_projection_args(w, "corrupt.pt"),
        lambda w: w.p("corrupt.pt"),
        "generate_vec",
    ),
    Case(
        "proj missing vector",
        "eval.cal_projection",
        lambda w: cal_projection_args(w, "absent.pt"),
        lambda w: w.p("absent.pt"),
        "exist",
    ),
    Case(
        "proj missing csv columns",
        "eval.cal_projection",
        lambda w: cal_projection_args(w, csv="no_prompt.csv"),
        lambda w: w.p("no_prompt.csv"),
        "eval_persona",
    ),
    Case(
        "proj model path does not exist",
        "eval.cal_projection",
        lambda w: [*cal_projection_args(w)[:6], "--model_name", w.p("no_model_here"), "--device", "cpu"],
        lambda w: w.p("no_model_here"),
        "model",
    ),
    Case("proj disk full", "eval.cal_projection", cal_projection_args, lambda w: "pos.csv", "space", errno.ENOSPC),
    # training.py
    Case(
        "train unknown config key",
        "training",
        lambda w: [w.p("config_unknown_key.json")],
        lambda w: "learning_rat",
        "learning_rate",
    ),
    Case(
        "train string learning rate",
        "training",
        lambda w: [w.p("config_string_lr.json")],
        lambda w: "learning_rate",
        "number",
    ),
    Case(
        "train malformed config json",
        "training",
        lambda w: [w.p("config_malformed.json")],
        lambda w: w.p("config_malformed.json"),
        "JSON",
    ),
    Case(
        "train missing training file",
        "training",
        lambda w: [w.p("config_missing_data.json")],
        lambda w: "absent.jsonl",
        "training_file",
    ),
    Case(
        "train missing config",
        "training",
        lambda w: [w.p("absent_config.json")],
        lambda w: w.p("absent_config.json"),
        "exist",
    ),
    # eval.judge
    Case(
        "judge missing csv columns",
        "eval.judge",
        lambda w: _judge(w, csv="no_question.csv"),
        lambda w: w.p("no_question.csv"),
        "eval_persona",
    ),
    Case(
        "judge unknown trait",
        "eval.judge",
        lambda w: _judge(w, trait="no_such_trait"),
        lambda w: "no_such_trait",
        "generate_trait",
    ),
    Case(
        "judge trait without eval prompt",
        "eval.judge",
        lambda w: _judge(w, trait="no_eval_prompt.json"),
        lambda w: "eval_prompt",
        "eval_prompt",
    ),
    # data_generation/generate_finetune_dataset.py
    Case(
        "finetune unknown trait",
        "data_generation.generate_finetune_dataset",
        lambda w: ["--trait", "no_such_trait", *_finetune_data(w)[2:]],
        lambda w: "no_such_trait",
        "generate_trait",
    ),
    Case(
        "finetune unknown domain",
        "data_generation.generate_finetune_dataset",
        lambda w: [*_finetune_data(w), "--domains", "astrology"],
        lambda w: "astrology",
        "choose",
    ),
    Case(
        "finetune negative retries",
        "data_generation.generate_finetune_dataset",
        lambda w: [*_finetune_data(w), "--retries", "-1"],
        lambda w: "--retries",
        ">= 0",
    ),
]


def message_lines(stderr: str) -> list[str]:
    """stderr without progress bars (tqdm redraws with \\r; they are not messages)."""
    lines = (part for line in stderr.splitlines() for part in line.split("\r"))
    return [line for line in lines if line.strip() and not PROGRESS_BAR.search(line)]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_and_writes_nothing(
    case: Case, workspace: Workspace, offline_env, monkeypatch, capsys
):
    monkeypatch.setattr(sys, "argv", [case.module])  # run_cli reads --verbose from the command line
    if case.disk_error is not None:
        monkeypatch.setattr(persona.io, "atomic_path", _fail_writes(case.disk_error, os.strerror(case.disk_error)))
    before = snapshot(workspace.root)
    main = _main(case.module)
    argv = case.argv(workspace)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(argv))
    err = capsys.readouterr().err
    lines = message_lines(err)
    assert exit_info.value.code not in (0, None)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert case.names(workspace) in lines[0], lines[0]
    assert case.fix.lower() in lines[0].lower(), lines[0]
    assert snapshot(workspace.root) == before  # nothing written, not even a temporary file
    assert not (workspace.root / "PAYLOAD_RAN").exists()


def test_verbose_shows_the_traceback(workspace: Workspace, offline_env, monkeypatch, capsys):
    from eval.eval_persona import main

    monkeypatch.setattr(sys, "argv", ["eval_persona", "--verbose"])
    with pytest.raises(ValueError, match="99"):
        run_cli(lambda: main(steered_args(workspace, layer="99")))


@pytest.mark.slow
def test_real_processes_print_one_error_line(workspace: Workspace, offline_env):
    before = snapshot(workspace.root)
    for argv, names in [
        (["-m", "eval.eval_persona", *steered_args(workspace, "corrupt.pt")], workspace.p("corrupt.pt")),
        (["training.py", workspace.p("config_string_lr.json")], "learning_rate"),
    ]:
        done = cli_process(argv, offline_env)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and len(errors) == 1 and names in errors[0], done.stderr
    assert snapshot(workspace.root) == before


@pytest.mark.slow
def test_real_process_with_verbose_shows_the_traceback(workspace: Workspace, offline_env):
    done = cli_process(["-m", "eval.eval_persona", *steered_args(workspace, "corrupt.pt"), "--verbose"], offline_env)
    assert done.returncode != 0 and "Traceback" in done.stderr and "corrupt.pt" in done.stderr


@pytest.mark.parametrize(
    "error, status, line",
    [
        (ValueError("2 validation errors\nlearning_rate\n  bad"), 2, "error: 2 validation errors; learning_rate; bad"),
        (
            OSError(errno.ENOSPC, "No space left on device", "/data/x.csv"),
            2,
            "error: no space left on the device writing /data/x.csv: "
            "free some space and rerun (finished outputs are kept)",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/ro/x.csv"),
            2,
            "error: cannot write /ro/x.csv (Permission denied): choose a writable output folder",
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "in.csv"),
            2,
            "error: in.csv does not exist (check the path)",
        ),
        (
            RuntimeError("CUDA out of memory"),
            1,
            "error: RuntimeError: CUDA out of memory (rerun with --verbose for the traceback)",
        ),
        (KeyboardInterrupt(), 130, "interrupted: rerun the same command to resume (finished outputs are kept)"),
    ],
)
def test_run_cli_turns_each_failure_into_one_line(error, status, line, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["prog"])
    monkeypatch.delenv("PERSONA_VERBOSE", raising=False)

    def main() -> int:
        raise error

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main)
    assert exit_info.value.code == status
    assert capsys.readouterr().err == line + "\n"


def test_usage_errors_are_one_line_too(monkeypatch, capsys):
    import argparse

    monkeypatch.setattr(sys, "argv", ["prog"])
    parser = argparse.ArgumentParser(prog="eval_persona")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: parser.parse_args(["--n", "many"]) and 0)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: eval_persona: argument --n: invalid int value: 'many' (see --help)\n"
    monkeypatch.setenv("PERSONA_VERBOSE", "1")
    with pytest.raises(SystemExit):  # verbose: argparse's own usage block and exit
        run_cli(lambda: parser.parse_args(["--n", "many"]) and 0)
    assert "usage: eval_persona" in capsys.readouterr().err
