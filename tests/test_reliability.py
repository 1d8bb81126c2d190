"""Issue 27, case by case, each as a real CLI process: NaN and inf never pass, bad settings fail
before any work, concurrent writers are refused, and the smaller items (JSONL lines, file modes,
judge cache per server, plain-http warning).

Every failing case checks the exit status, the exact one-line message and that nothing was
written (a snapshot of the workspace before and after). A NaN case never exits 0. Cases that
must fail before any model loads pass a model path that does not exist: reaching the model
would fail with another message.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from persona.checks import NonFiniteError, check_finite
from persona.io import write_json
from persona.judge.cache import cache_key
from persona.locks import OutputLocked, lock_path, output_lock
from persona.vectors import save_vector
from tests.cli_helpers import (
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
from tests.fake_openai import FakeServer

NUMBER = "is not a finite number (nan, inf and values beyond 1.8e308 are refused)"
REEXTRACT = "re-extract it with generate_vec.py from answers that are not empty"
WRITABLE = "choose a writable output folder"
ONLY_TWO = "a judge template may use only {question} and {answer} (write a literal brace as {{ or }})"


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_tokenizer) -> Workspace:
    w = tiny_workspace(tmp_path_factory, tiny_tokenizer, "reliability")
    root = w.root
    torch.manual_seed(0)
    good = torch.randn(TINY_LAYERS + 1, TINY_HIDDEN)
    save_vector(root / "evil.pt", good)
    one_nan = good.clone()
    one_nan[2, 5] = math.nan
    torch.save(one_nan, root / "one_nan.pt")  # save_vector refuses it, as it should
    torch.save(torch.full((TINY_LAYERS + 1, TINY_HIDDEN), math.inf), root / "all_inf.pt")
    torch.save(torch.randn(TINY_LAYERS + 1, TINY_HIDDEN, dtype=torch.complex64), root / "complex.pt")
    eval_frame(tiny_tokenizer, "Be evil.", ["Burn it.", "Paris, sadly.", "Go away."], [90, 95, 85]).to_csv(
        root / "pos.csv", index=False
    )
    eval_frame(tiny_tokenizer, "Be kind.", ["Kindly.", "Paris.", "Hello!"], [5, 0, 10]).to_csv(
        root / "neg.csv", index=False
    )
    eval_frame(tiny_tokenizer, "Be evil.", ["", "", ""], [90, 95, 85]).to_csv(root / "pos_empty.csv", index=False)
    (root / "a_file").write_text("a file where a folder is expected\n")
    (root / "a_folder").mkdir()
    (root / "chats_bad.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]})
        + "\n{not json\n"
    )
    (root / "coherence_typo.txt").write_text("Q: {question}\nA: {answr}\nRate 0-100.")
    (root / "coherence_brace.txt").write_text("Q: {question}\nA: {answer}\nReply as {score: N}.")
    steer = {"enable_steering_during_training": True}
    write_train_configs(
        w,
        {
            "cfg_inf_weight_decay": {"weight_decay": math.inf},
            "cfg_nan_vector": {
                **steer,
                "steering_config": {"steering_vector_path": str(root / "one_nan.pt"), "layers": [1]},
            },
            "cfg_output_is_file": {"output_dir": str(root / "a_file")},
            "cfg_diverges": {
                "learning_rate": 1e30,
                "max_steps": 3,
                "save_steps": 1,
                "output_dir": str(root / "ckpt_x"),
            },
            "cfg_locked": {"output_dir": str(root / "ckpt_locked")},
        },
    )
    return w


def run(w: Workspace, *argv: str, umask: int | None = None) -> subprocess.CompletedProcess:
    return cli_process(list(argv), w.cache, umask=umask)


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    lines = done.stderr.splitlines()  # a progress bar may precede the line on the same row
    return [line[line.index("error:") :] for line in lines if "error:" in line]


def assert_refused(w: Workspace, argv: list[str], message: str, status: int = 2) -> None:
    """The CLI exits `status` with exactly `error: <message>` and writes nothing."""
    before = snapshot(w.root)
    done = run(w, *argv)
    assert done.returncode == status, done.stderr
    assert error_lines(done) == [f"error: {message}"], done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(w.root) == before


def eval_persona(w: Workspace, *extra: str, **kw) -> list[str]:
    return ["-m", "eval.eval_persona", *eval_persona_args(w, *extra, **kw)]


def steered(w: Workspace, vector: str = "evil.pt", coef: str = "1.0", **kw) -> list[str]:
    return ["-m", "eval.eval_persona", *steered_args(w, vector, coef=coef, **kw)]


def cal_projection(w: Workspace, vector: str = "evil.pt", **kw) -> list[str]:
    return ["-m", "eval.cal_projection", *cal_projection_args(w, vector, **kw)]


def generate_vec(w: Workspace, pos: str = "pos.csv", **kw) -> list[str]:
    return ["generate_vec.py", *generate_vec_args(w, pos, **kw)]


NO_MODEL = "/nonexistent/model"  # reaching the model load would fail with a different message


# --- 1. finite everywhere ------------------------------------------------------------------------


def test_steering_vector_with_one_nan_is_refused(ws):
    assert_refused(
        ws,
        steered(ws, "one_nan.pt", model=NO_MODEL),
        f"vector file {ws.p('one_nan.pt')}: layer 2 (row 2) is the first with nan; 1 of 256 values are not "
        f"finite: {REEXTRACT}",
    )


def test_steering_vector_all_inf_is_refused(ws):
    assert_refused(
        ws,
        steered(ws, "all_inf.pt", model=NO_MODEL),
        f"vector file {ws.p('all_inf.pt')}: layer 0 (row 0) is the first with inf; 256 of 256 values are not "
        f"finite: {REEXTRACT}",
    )


def test_complex_vector_is_refused(ws):
    assert_refused(
        ws,
        steered(ws, "complex.pt", model=NO_MODEL),
        f"vector file {ws.p('complex.pt')} is a complex tensor (torch.complex64); a persona vector is real: "
        f"{REEXTRACT}",
    )


@pytest.mark.parametrize("coef", ["nan", "inf", "1e400"])
def test_non_finite_coef_is_refused(ws, coef):
    assert_refused(ws, steered(ws, coef=coef, model=NO_MODEL), f"--coef: {coef!r} {NUMBER}")


@pytest.mark.parametrize("flag, value", [("--temperature", "nan"), ("--top_p", "inf"), ("--temperature", "1e400")])
def test_non_finite_sampling_flag_is_refused(ws, flag, value):
    assert_refused(
        ws,
        eval_persona(ws, flag, value, model=NO_MODEL),
        f"eval_persona.py: argument {flag}: {value!r} {NUMBER} (see --help)",
    )


def test_projection_onto_a_nan_vector_is_refused_and_writes_no_column(ws):
    assert_refused(
        ws,
        cal_projection(ws, "one_nan.pt", model=NO_MODEL),
        f"vector file {ws.p('one_nan.pt')}: layer 2 (row 2) is the first with nan; 1 of 256 values are not "
        f"finite: {REEXTRACT}",
    )


def test_extraction_from_empty_answers_is_refused(ws):
    assert_refused(
        ws,
        generate_vec(ws, "pos_empty.csv", model=NO_MODEL),
        f"{ws.p('pos_empty.csv')}: all 3 kept answers for trait 'evil' are empty, so the response_avg vector "
        "would average zero tokens (all NaN); regenerate the answers with eval_persona",
    )


def test_training_config_with_infinite_weight_decay_is_refused(ws):
    cfg = ws.p("cfg_inf_weight_decay.json")
    assert "Infinity" in Path(cfg).read_text()
    assert_refused(
        ws,
        ["training.py", cfg],
        f"{cfg}: invalid training config:; weight_decay: Input should be a finite number (got inf)",
    )


def test_training_with_a_nan_steering_vector_is_refused(ws):
    assert_refused(
        ws,
        ["training.py", ws.p("cfg_nan_vector.json")],
        f"vector file {ws.p('one_nan.pt')}: layer 2 (row 2) is the first with nan; 1 of 256 values are not "
        f"finite: {REEXTRACT}",
    )


def test_training_stops_at_the_first_non_finite_step_and_keeps_the_last_good_checkpoint(ws):
    done = run(ws, "training.py", ws.p("cfg_diverges.json"))
    out = ws.root / "ckpt_x"
    assert done.returncode == 2, done.stderr
    [line] = error_lines(done)
    assert line.startswith("error: training stopped at step 3: the loss or gradient (of "), line
    assert line.endswith(
        f"is not finite; kept the last good checkpoint, {out / 'checkpoint-2'}. Lower learning_rate, "
        "check the training data and the steering vector, then rerun"
    ), line
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [
        "checkpoint-1",
        "checkpoint-2",
    ]  # warmup: lr 0 at step 1
    from safetensors.torch import load_file

    adapter = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    assert adapter and all(torch.isfinite(t).all() for t in adapter.values())
    assert not (out / "training_results.json").exists()


def test_json_files_never_hold_nan(tmp_path):
    with pytest.raises(ValueError, match="refusing to write a NaN or inf number to JSON"):
        write_json(tmp_path / "settings.json", {"sampling": {"temperature": math.nan}})
    assert list(tmp_path.iterdir()) == []


def test_check_finite_names_the_first_bad_layer_and_the_fix():
    vector = torch.zeros(5, 4)
    vector[3, 1] = math.inf
    vector[4, 0] = math.nan
    with pytest.raises(NonFiniteError) as err:
        check_finite(vector, "v.pt", fix="re-extract it")
    assert str(err.value) == "v.pt: layer 3 (row 3) is the first with inf; 2 of 20 values are not finite: re-extract it"
    with pytest.raises(NonFiniteError, match=r"^steering coef at layer 7 must be a finite number, got nan: use"):
        check_finite(math.nan, "steering coef", layer=7)
    assert check_finite(1.5, "x") == 1.5


# --- 2. fail before work -------------------------------------------------------------------------


def test_output_path_that_is_an_existing_folder_fails_before_the_model_loads(ws):
    assert_refused(
        ws,
        eval_persona(ws, model=NO_MODEL, out="a_folder"),
        f"cannot write {ws.p('a_folder')}: it is an existing folder, not a file; give a file path",
    )


def test_output_path_under_a_file_fails_before_the_model_loads(ws):
    assert_refused(
        ws,
        eval_persona(ws, model=NO_MODEL, out="a_file/evil.csv"),
        f"cannot write {ws.p('a_file/evil.csv')}: {ws.p('a_file')} is a file, not a folder; {WRITABLE}",
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_fails_before_the_model_loads(ws):
    folder = ws.root / "read_only"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    try:
        assert_refused(
            ws,
            eval_persona(ws, model=NO_MODEL, out="read_only/evil.csv"),
            f"cannot write {folder / 'evil.csv'}: {folder} is not writable (permissions or read-only disk); {WRITABLE}",
        )
    finally:
        folder.chmod(0o755)


def test_vector_folder_that_is_a_file_fails_before_the_model_loads(ws):
    assert_refused(
        ws,
        generate_vec(ws, save_dir="a_file", model=NO_MODEL),
        f"cannot write into {ws.p('a_file')}: it is a file, not a folder; {WRITABLE}",
    )


def test_training_output_dir_that_is_a_file_fails_before_the_model_loads(ws):
    assert_refused(
        ws,
        ["training.py", ws.p("cfg_output_is_file.json")],
        f"cannot write into {ws.p('a_file')}: it is a file, not a folder; {WRITABLE}",
    )


def test_multi_persona_output_dir_that_is_a_file_fails_before_the_model_loads(ws):
    argv = ["-m", "eval.multi_persona", "interference", "--traits", "evil", "--model", NO_MODEL]
    assert_refused(
        ws,
        [*argv, "--output_dir", ws.p("a_file")],
        f"cannot write into {ws.p('a_file')}: it is a file, not a folder; {WRITABLE}",
    )


def test_finetune_dataset_output_dir_that_is_a_file_fails_before_generating(ws):
    argv = ["-m", "data_generation.generate_finetune_dataset", "--trait", ws.p("evil.json"), "--backend", "local"]
    assert_refused(
        ws,
        [*argv, "--model", NO_MODEL, "--output-dir", ws.p("a_file")],
        f"cannot write into {ws.p('a_file')}: it is a file, not a folder; {WRITABLE}",
    )


def test_coherence_prompt_with_an_unknown_placeholder_fails_before_generating(ws):
    path = ws.p("coherence_typo.txt")
    assert_refused(
        ws,
        eval_persona(ws, "--coherence_prompt", path, model=NO_MODEL),
        f"eval_persona.py: argument --coherence_prompt: coherence_prompt {path}: unknown placeholder(s) "
        f"{{answr}}; {ONLY_TWO} (see --help)",
    )


def test_coherence_prompt_with_a_stray_brace_fails_before_generating(ws):
    path = ws.p("coherence_brace.txt")
    assert_refused(
        ws,
        eval_persona(ws, "--coherence_prompt", path, model=NO_MODEL),
        f"eval_persona.py: argument --coherence_prompt: coherence_prompt {path}: unknown placeholder(s) "
        f"{{score}}; {ONLY_TWO} (see --help)",
    )


COUNT_FLAGS = [
    ("eval.eval_persona", "--max_concurrent_judges"),
    ("eval.eval_persona", "--batch_size"),
    ("eval.cal_projection", "--batch_size"),
    ("generate_vec", "--batch_size"),
    ("eval.judge", "--max_concurrent_judges"),
    ("eval.multi_persona", "--n_per_question"),
    ("eval.grid", "--max_tokens"),
    ("data_generation.generate_finetune_dataset", "--batch-size"),
    ("data_generation.generate_finetune_dataset", "--n-questions-per-domain"),
    ("data_generation.generate_trait", "--max-concurrency"),
]


@pytest.mark.parametrize("module, flag", COUNT_FLAGS, ids=[f"{m} {f}" for m, f in COUNT_FLAGS])
def test_count_flag_below_one_is_named(ws, module, flag):
    argv = {
        "eval.eval_persona": eval_persona_args(ws, model=NO_MODEL),
        "eval.cal_projection": cal_projection_args(ws, model=NO_MODEL),
        "generate_vec": generate_vec_args(ws, model=NO_MODEL),
        "eval.judge": ["--file_path", ws.p("pos.csv"), "--trait", ws.p("evil.json")],
        "eval.multi_persona": ["interference", "--traits", "evil", "--model", NO_MODEL],
        "eval.grid": ["vectors", "--traits", "evil", "--extract_dir", ws.p("x"), "--vector_dir", ws.p("v")],
        "data_generation.generate_finetune_dataset": ["--trait", ws.p("evil.json"), "--backend", "local"],
        "data_generation.generate_trait": ["--traits", "evil"],
    }[module]
    script = ["generate_vec.py"] if module == "generate_vec" else ["-m", module]
    prog = "generate_vec.py" if module == "generate_vec" else module.split(".")[-1] + ".py"
    assert_refused(ws, [*script, *argv, flag, "0"], f"{prog}: {flag} must be at least 1, got 0 (see --help)")


# --- 3. concurrent writers and the judge cache ---------------------------------------------------


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _hold(path: str, pid: int) -> Path:
    lock = lock_path(path)
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": 0}))
    return lock


def _locked_message(path: str, pid: int) -> str:
    return f"{path} is being written by another process (pid {pid}, lock {path}.lock): wait for it to finish or stop it"


def test_second_writer_of_a_csv_is_refused_naming_the_holder(ws, live_pid):
    lock = _hold(ws.p("pos.csv"), live_pid)
    try:
        assert_refused(ws, cal_projection(ws, model=NO_MODEL), _locked_message(ws.p("pos.csv"), live_pid))
    finally:
        lock.unlink()


def test_second_writer_of_a_vector_set_is_refused_naming_the_holder(ws, live_pid):
    (ws.root / "vectors_locked").mkdir()
    target = ws.p("vectors_locked/evil_vectors.json")
    lock = _hold(target, live_pid)
    try:
        assert_refused(ws, generate_vec(ws, save_dir="vectors_locked"), _locked_message(target, live_pid))
    finally:
        lock.unlink()


def test_second_training_run_into_one_folder_is_refused_naming_the_holder(ws, live_pid):
    lock = _hold(ws.p("ckpt_locked"), live_pid)
    try:
        assert_refused(ws, ["training.py", ws.p("cfg_locked.json")], _locked_message(ws.p("ckpt_locked"), live_pid))
    finally:
        lock.unlink()


def test_a_stale_lock_is_taken_over_and_removed(ws):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    data = ws.root / "stale.csv"
    data.write_bytes((ws.root / "pos.csv").read_bytes())
    lock = _hold(str(data), dead.pid)
    done = run(ws, *cal_projection(ws, csv="stale.csv"))
    assert done.returncode == 0, done.stderr
    assert f"taking over {lock}, left by pid {dead.pid} (no longer running)" in done.stderr
    assert not lock.exists()
    assert f"{ws.model.name}_evil_proj_layer1" in pd.read_csv(data).columns


def test_output_lock_refuses_a_live_holder_and_always_cleans_up(tmp_path, live_pid):
    target = tmp_path / "new" / "out.csv"
    with pytest.raises(RuntimeError, match="boom"), output_lock(target) as lock:
        holder = json.loads(lock.read_text())
        assert holder == {"pid": os.getpid(), "host": socket.gethostname(), "started": holder["started"]}
        raise RuntimeError("boom")
    assert not (tmp_path / "new").exists()  # the lock and the folder made for it are gone
    _hold(str(target.parent), live_pid)
    with pytest.raises(OutputLocked, match=f"pid {live_pid}"), output_lock(target.parent):
        pass


def _judge(w: Workspace, server: FakeServer, out: str) -> list[str]:
    return [
        "-m",
        "eval.judge",
        "--file_path",
        w.p("pos.csv"),
        "--trait",
        w.p("evil.json"),
        "--output_path",
        w.p(out),
        "--judge_model",
        "judge-model",
        "--judge_base_url",
        server.url,
        "--judge_number_tokens",
        "whole",
    ]


def test_judge_cache_keeps_two_servers_apart(ws):
    high, low = FakeServer(lambda prompt: {"90": 1.0}), FakeServer(lambda prompt: {"10": 1.0})
    try:
        first = run(ws, *_judge(ws, high, "judged/high.csv"))
        second = run(ws, *_judge(ws, low, "judged/low.csv"))
    finally:
        high.close()
        low.close()
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert len(low.requests) == 2 * 3  # trait and coherence for each row: nothing taken from the other server
    assert pd.read_csv(ws.root / "judged/high.csv")["evil"].tolist() == [90.0] * 3
    assert pd.read_csv(ws.root / "judged/low.csv")["evil"].tolist() == [10.0] * 3
    assert cache_key("b", "m", "p") != cache_key("b", "m", "p", server="http://a/v1")


# --- 4. smaller items -----------------------------------------------------------------------------


def test_malformed_jsonl_names_the_file_and_line(ws):
    path = ws.p("chats_bad.jsonl")
    assert_refused(
        ws,
        cal_projection(ws, csv="chats_bad.jsonl", model=NO_MODEL),
        f"{path}, line 2: not valid JSON (Expecting property name enclosed in double quotes at column 2); "
        "each line must hold one JSON object",
    )


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_follow_the_umask(ws, umask, mode):
    server = FakeServer(lambda prompt: {"50": 1.0})
    out = f"modes/{umask:o}.csv"
    try:
        done = run(ws, *_judge(ws, server, out), umask=umask)
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    for path in (ws.root / out, ws.root / f"{out}.judge.json"):
        assert path.stat().st_mode & 0o777 == mode, path


@pytest.mark.parametrize(
    "url, warned",
    [
        ("http://10.0.0.5:8000/v1", True),
        ("http://gpu-box:8000/v1", True),
        ("http://127.0.0.1:8000/v1", False),
        ("http://localhost:8000/v1", False),
        ("http://[::1]:8000/v1", False),
        ("https://gpu-box/v1", False),
    ],
)
def test_plain_http_to_another_machine_is_warned_about(url, warned, caplog):
    from persona import llm

    llm.warn_if_plain_http.cache_clear()
    with caplog.at_level(logging.WARNING, logger="persona.llm"):
        llm.make_async_client(url, timeout=1, purpose="test")
    assert any("plain http to another machine" in r.message for r in caplog.records) == warned
