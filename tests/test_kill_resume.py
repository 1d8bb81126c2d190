"""Kill -9 anywhere: real CLI processes and pipelines killed mid-run, then the same command run again.

Each command runs as a subprocess on a tiny saved model with a test hook (a sitecustomize that
wraps `persona.io.atomic_path` and the Trainer's `trainer_state.json` writer) that stops it at a
chosen file write: before it, with the temporary file written but not yet renamed ("inside"),
or just after the rename ("after"); the test then SIGKILLs its process group there. Checked:
every visible file is whole (the half-written one exists only as a hidden `.name.<pid>.*.tmp`),
the rerun recomputes nothing that was finished (mtimes, generation patched to fail when it must
not run, the training steps that run), stale temporaries are cleaned, and the final files equal
an uninterrupted run with the same seed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import persona.answers
import persona.evaluation
import persona.extraction
import persona.training.trainer as trainer_module
from persona.evaluation import sweep_filename
from persona.fingerprint import SettingsMismatch, read_record
from persona.io import read_table, write_jsonl
from persona.judge.sidecar import read_sidecar
from persona.layout import Layout
from persona.models import checkpoints, newest_checkpoint
from persona.projection import records_path
from persona.training.trainer import RESULTS_FILE
from persona.vectors import VECTOR_KINDS, load_vector, save_vector
from tests.test_generate_vec import NEG_ANSWERS, POS_ANSWERS, frame
from tests.test_pipelines import FAST, SCRIPTS, ok, run_script, save_random_vector
from tests.test_training import QA, tiny_config

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TEXT_COLUMNS = ["question", "prompt", "answer", "question_id"]

HOOK = '''
"""Test hook: stop at a chosen file write so the test can kill the process there.

PERSONA_TEST_PAUSE_AT="TARGET:WHERE". TARGET: K (the K-th atomic write of the process) or a path
tail (`evil.csv`, `checkpoint-4/trainer_state.json`: a write of that file). WHERE: "before" (nothing
of it written), "inside" (the temporary written, not renamed; for the Trainer's non-atomic
trainer_state.json, its first half in place) or "after" (the whole file in place).
"""
import contextlib, os, time
from pathlib import Path

_spec = os.environ.get("PERSONA_TEST_PAUSE_AT")
if _spec:
    import persona.io

    _target, _where = _spec.rsplit(":", 1)
    _marker = Path(os.environ["PERSONA_TEST_PAUSED"])
    _count = [0]

    def _is_target(path, n=None):
        return _target == str(n) or ("/" + str(path)).endswith("/" + _target)

    def _pause(path, where, hit):
        if hit and where == _where:
            _marker.write_text(str(path))
            time.sleep(600)

    _original = persona.io.atomic_path

    @contextlib.contextmanager
    def atomic_path(path):
        _count[0] += 1
        hit = _is_target(path, _count[0])
        _pause(path, "before", hit)
        with _original(path) as tmp:
            yield tmp
            _pause(path, "inside", hit)
        _pause(path, "after", hit)

    persona.io.atomic_path = atomic_path

    if _target.endswith("trainer_state.json"):  # the Trainer's last checkpoint file (not via atomic_path)
        from transformers.trainer_callback import TrainerState

        _save = TrainerState.save_to_json

        def save_to_json(self, json_path):
            hit = _is_target(json_path)
            _pause(json_path, "before", hit)
            _save(self, json_path)
            if hit and _where == "inside":  # what a kill in the middle of writing it leaves
                text = Path(json_path).read_bytes()
                Path(json_path).write_bytes(text[: len(text) // 2])
            _pause(json_path, "inside", hit)
            _pause(json_path, "after", hit)

        TrainerState.save_to_json = save_to_json
'''


@pytest.fixture(scope="module")
def hook_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hook")
    (path / "sitecustomize.py").write_text(HOOK)
    return path


def killed_run(
    hook_dir: Path,
    tmp_path: Path,
    argv: list[str],
    pause_at: str,
    *,
    program: tuple[str, ...] = (sys.executable,),
    env: dict[str, str] | None = None,
) -> Path:
    """Run `python argv...` (or `program argv...`) until a process of it stops at write `pause_at`;
    SIGKILL its whole process group (a pipeline's shell, tee and Python alike); the path being written."""
    name = re.sub(r"[^\w.-]", "-", pause_at)
    marker = tmp_path / f"paused-{name}"
    full_env = {
        **os.environ,
        "PYTHONPATH": f"{hook_dir}{os.pathsep}{REPO}",
        "HF_HUB_OFFLINE": "1",
        "PERSONA_TEST_PAUSE_AT": pause_at,
        "PERSONA_TEST_PAUSED": str(marker),
        **(env or {}),
    }
    full_env.pop("OPENAI_API_KEY", None)
    log = tmp_path / f"stderr-{name}.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [*program, *argv], cwd=REPO, env=full_env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
        deadline = time.monotonic() + 300
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):  # the group is gone when the run ended by itself
            os.killpg(proc.pid, signal.SIGKILL)
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

    # killed with the temporary of evil.csv written, not renamed (answers and records already written)
    assert (
        killed_run(hook_dir, tmp_path, ["-m", "eval.eval_persona", *argv, "--output_path", str(run)], "evil.csv:inside")
        == run
    )
    assert not run.exists() and (run.parent / "evil.answers.csv").exists()
    assert [p.name.split(".")[1:3] for p in hidden_temporaries(run.parent)] == [["evil", "csv"]]
    assert_visible_files_whole(run.parent)

    monkeypatch.setattr(persona.answers, "generate_cells", no_generation)
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

    # killed the moment cell 1's CSV is in place (its answers not yet removed)
    killed_run(hook_dir, tmp_path, ["-m", "eval.eval_persona", *argv, "--output_dir", str(run)], f"{cells[0]}:after")
    assert_visible_files_whole(run)
    finished = sorted(p for p in run.glob("*.csv") if not p.name.endswith(".answers.csv"))
    assert [p.name for p in finished] == [cells[0]]
    assert len(list(run.glob("*.answers.csv"))) == 2  # cell 1's answers are left: a rerun drops them
    stamp = finished[0].stat().st_mtime_ns

    monkeypatch.setattr(persona.answers, "generate_cells", no_generation)
    assert main([*argv, "--output_dir", str(run)]) == 0
    assert finished[0].stat().st_mtime_ns == stamp  # the finished cell is not recomputed
    for name in cells:
        assert_same_table(run / name, reference / name)
    assert not list(run.glob("*.answers.*")) and not hidden_temporaries(run)


def test_a_finished_eval_csv_is_never_visible_without_its_records(hook_dir, inputs, tmp_path, offline_env):
    """Killed the moment evil.csv is in place: its settings record and judge sidecar are already
    there, so a rerun with other settings is refused instead of keeping it as made before records."""
    from eval.eval_persona import main

    run = tmp_path / "run" / "evil.csv"
    argv = [*eval_args(inputs, "--layer", "1", "--coef", "2.0"), "--output_path", str(run)]
    killed_run(hook_dir, tmp_path, ["-m", "eval.eval_persona", *argv], "evil.csv:after")
    record, sidecar = read_record(run), read_sidecar(run)
    assert record is not None and sidecar is not None, "a visible CSV without its settings record or judge sidecar"
    assert record["seed"] == 0 and sidecar["judge"] == "likelihood"
    stamp = run.stat().st_mtime_ns

    with pytest.raises(SettingsMismatch, match=r"evil.csv exists but was made with other settings \(seed: 0 -> 7\)"):
        main([*argv, "--seed", "7"])
    assert main(argv) == 0  # the same settings: finished, kept as it is
    assert run.stat().st_mtime_ns == stamp and not list(run.parent.glob("*.answers.*"))


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


def projection_argv(path: Path, vector: str | Path, model: Path, *extra: str) -> list[str]:
    """`python -m eval.cal_projection` on `path`: one vector, layers 1 and 3."""
    argv = ["--file_path", str(path), "--vector_path_list", str(vector), "--layer_list", "1", "3"]
    return [*argv, "--model_name", str(model), "--device", "cpu", *extra]


def test_cal_projection_killed_while_rewriting_the_file(hook_dir, pairs, inputs, tiny_llama_dir, tmp_path):
    from eval.cal_projection import main

    reference, run = tmp_path / "reference.csv", tmp_path / "run" / "pos.csv"
    run.parent.mkdir()
    for copy in (reference, run):
        copy.write_bytes(pairs[0].read_bytes())
    original = run.read_bytes()

    assert main(projection_argv(reference, inputs["vector"], tiny_llama_dir)) == 0
    argv = ["-m", "eval.cal_projection", *projection_argv(run, inputs["vector"], tiny_llama_dir)]
    assert killed_run(hook_dir, tmp_path, argv, "pos.csv:inside") == run
    assert run.read_bytes() == original and len(hidden_temporaries(run.parent)) == 1  # the old file, whole

    assert main(projection_argv(run, inputs["vector"], tiny_llama_dir)) == 0
    assert_same_table(run, reference)
    assert not hidden_temporaries(run.parent)


@dataclass(frozen=True)
class Projected:
    """An uninterrupted cal_projection run: its `pos.csv` (beside its records) and the vector used."""

    csv: Path
    vector: Path


@pytest.fixture
def projected(pairs, inputs, tiny_llama_dir, tmp_path) -> dict[str, Projected]:
    """Uninterrupted runs on copies of pos.csv: `first` with inputs' v.pt, `second` with another
    v.pt (the same column names, other values)."""
    from eval.cal_projection import main

    second = tmp_path / "second" / "v.pt"
    save_vector(second, torch.randn(4, 64, generator=torch.Generator().manual_seed(1)) * 4)
    runs = {}
    for name, vector in {"first": Path(inputs["vector"]), "second": second}.items():
        runs[name] = Projected(tmp_path / f"{name}_reference" / "pos.csv", vector)
        runs[name].csv.parent.mkdir()
        runs[name].csv.write_bytes(pairs[0].read_bytes())
        assert main(projection_argv(runs[name].csv, vector, tiny_llama_dir)) == 0
    return runs


def copy_projected(source: Path, folder: Path) -> Path:
    """A copy of an eval CSV and its projection records in `folder`."""
    folder.mkdir()
    for path in (source, records_path(source)):
        if path.exists():
            (folder / path.name).write_bytes(path.read_bytes())
    return folder / source.name


def assert_columns_match_records(path: Path, references: list[Path]) -> None:
    """Every projection column of `path` has a record, and holds what an uninterrupted run with the
    vector that record names (one of `references`) wrote: no column without its record or a stale one."""
    records = json.loads(records_path(path).read_text()) if records_path(path).exists() else {}
    made_with = {
        record["vector_sha256"]: reference
        for reference in references
        for record in json.loads(records_path(reference).read_text()).values()
    }
    table = read_table(path)
    for name in projection_columns(path):
        assert name in records, f"column {name} of {path} has no record"
        reference = read_table(made_with[records[name]["vector_sha256"]])
        pd.testing.assert_series_equal(table[name], reference[name], rtol=1e-4)


def projection_columns(path: Path) -> list[str]:
    """The columns `projection_argv` adds that `path` has."""
    return [c for c in read_table(path).columns if c.endswith(("_layer1", "_layer3"))]


def assert_same_projections(path: Path, reference: Path) -> None:
    assert_same_table(path, reference)
    assert json.loads(records_path(path).read_text()) == json.loads(records_path(reference).read_text())


def test_cal_projection_killed_between_its_records_and_its_columns(
    hook_dir, pairs, projected, tiny_llama_dir, tmp_path
):
    """Killed after its first write (the records, then the file with the new columns): the columns
    are absent, not kept as made before records existed, so the same command computes them and one
    with another vector of the same name computes them with that vector."""
    from eval.cal_projection import main

    run = tmp_path / "run" / "pos.csv"
    run.parent.mkdir()
    run.write_bytes(pairs[0].read_bytes())
    argv = ["-m", "eval.cal_projection", *projection_argv(run, projected["first"].vector, tiny_llama_dir)]
    written = killed_run(hook_dir, tmp_path, argv, "1:after")
    assert_columns_match_records(run, [projected["first"].csv])
    assert written == records_path(run) and run.read_bytes() == pairs[0].read_bytes()
    other = copy_projected(run, tmp_path / "other")

    assert main(projection_argv(run, projected["first"].vector, tiny_llama_dir)) == 0
    assert_same_projections(run, projected["first"].csv)
    assert main(projection_argv(other, projected["second"].vector, tiny_llama_dir)) == 0
    assert_same_projections(other, projected["second"].csv)


@pytest.mark.parametrize("pause_at", ["1:after", "2:after"], ids=["old-columns-dropped", "records-written"])
def test_cal_projection_overwrite_killed_between_its_writes(projected, hook_dir, tiny_llama_dir, tmp_path, pause_at):
    """`--overwrite` with another vector over finished columns, killed after its first or second
    write (the file without the old columns, the new records, the file with the new columns): every
    visible column holds what its record says, and the same command then ends as a run on a fresh file."""
    from eval.cal_projection import main

    run = copy_projected(projected["first"].csv, tmp_path / "run")
    argv = projection_argv(run, projected["second"].vector, tiny_llama_dir, "--overwrite")
    killed_run(hook_dir, tmp_path, ["-m", "eval.cal_projection", *argv], pause_at)
    assert_columns_match_records(run, [projected["first"].csv, projected["second"].csv])
    assert not projection_columns(run)

    assert main(argv) == 0
    assert_same_projections(run, projected["second"].csv)


def training_config(model_dir: Path, folder: Path, name: str) -> tuple[Path, Path]:
    """A 4-step LoRA config saving every 2 steps, as the JSON file training.py reads; (file, output_dir)."""
    data = folder / "train.jsonl"
    write_jsonl(
        data, [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in QA]
    )
    cfg = tiny_config(model_dir, data, folder / name, max_steps=4, save_steps=2, gradient_accumulation_steps=1)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(cfg.model_dump(mode="json")))
    return path, folder / name


def final_adapter(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoint-4" / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted_adapter(tiny_llama_dir, tmp_path_factory) -> dict[str, torch.Tensor]:
    from training import main

    config, out = training_config(tiny_llama_dir, tmp_path_factory.mktemp("training"), "whole")
    assert main([str(config)]) == 0
    return final_adapter(out)


class StepLog(TrainerCallback):
    """The global step after every optimizer step this process runs."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.steps.append(state.global_step)


def watch_training_steps(monkeypatch) -> list[int]:
    """The steps the next in-process training runs (filled while it runs)."""
    build = trainer_module.build_trainer
    log = StepLog()

    def build_watched(cfg):
        trainer = build(cfg)
        trainer.add_callback(log)
        return trainer

    monkeypatch.setattr(trainer_module, "build_trainer", build_watched)
    return log.steps


@pytest.mark.parametrize(
    ("where", "redone"),
    [("before", [3, 4]), ("inside", [3, 4]), ("after", [])],
    ids=["no-trainer-state", "half-trainer-state", "complete"],
)
def test_training_killed_while_saving_its_last_checkpoint(
    hook_dir, tiny_llama_dir, uninterrupted_adapter, tmp_path, monkeypatch, where, redone
):
    """`python training.py` killed around checkpoint-4's trainer_state.json (the last file of a save):
    the rerun resumes from the newest complete checkpoint, runs only the steps after it and ends
    with the adapter of an uninterrupted run; a half-saved checkpoint is never loaded."""
    from training import main

    config, out = training_config(tiny_llama_dir, tmp_path, "run")
    killed_run(hook_dir, tmp_path, ["training.py", str(config)], f"checkpoint-4/trainer_state.json:{where}")
    assert (out / "checkpoint-4").is_dir() and not (out / RESULTS_FILE).exists()
    assert newest_checkpoint(out).name == ("checkpoint-2" if redone else "checkpoint-4")  # what load_model uses

    steps = watch_training_steps(monkeypatch)
    assert main([str(config)]) == 0
    assert steps == redone  # nothing saved in a complete checkpoint is trained again
    assert [(n, done) for n, _, done in checkpoints(out)] == [(2, True), (4, True)]
    resumed = final_adapter(out)
    assert resumed.keys() == uninterrupted_adapter.keys()
    for key, weights in uninterrupted_adapter.items():
        torch.testing.assert_close(resumed[key], weights, rtol=1e-5, atol=1e-6)
    assert json.loads((out / RESULTS_FILE).read_text())["global_step"] == 4

    assert main([str(config)]) == 0 and steps == redone  # finished: not trained again


def test_sweep_pipeline_killed_in_its_second_process(hook_dir, tiny_llama_dir, tmp_path, offline_env):
    """scripts/eval_steering_sweep.sh over two traits (one eval_persona process each), its process
    group killed once the second trait's first cell is written: the rerun skips the three finished
    cells, judges the saved answers of the fourth and ends with the files of an uninterrupted run."""
    settings = {**FAST, "PY": sys.executable, "MODEL": str(tiny_llama_dir), "TRAITS": "evil optimistic"}
    settings |= {"LAYERS": "1", "COEFS": "0.0 2.0"}
    roots = {name: {**settings, "OUTPUT_ROOT": str(tmp_path / name)} for name in ("reference", "run")}
    layouts = [Layout(str(tiny_llama_dir), env["OUTPUT_ROOT"]) for env in roots.values()]
    for layout in layouts:
        for seed, trait in enumerate(("evil", "optimistic")):
            save_random_vector(layout.vectors_dir / f"{trait}_response_avg_diff.pt", seed)
    reference, run = (layout.eval_dir for layout in layouts)
    ok(run_script("eval_steering_sweep.sh", roots["reference"]))
    cells = sorted(p.name for p in reference.glob("*.csv"))
    first, last = (sweep_filename("optimistic", "response", 1, coef) for coef in (0.0, 2.0))
    assert len(cells) == 4 and {first, last} <= set(cells)

    script = [str(SCRIPTS / "eval_steering_sweep.sh"), "0"]
    killed_run(hook_dir, tmp_path, script, f"{first}:after", program=("bash",), env=roots["run"])
    assert_visible_files_whole(run)
    finished = {p: p.stat().st_mtime_ns for p in run.glob("*.csv") if not p.name.endswith(".answers.csv")}
    assert sorted(p.name for p in finished) == sorted(set(cells) - {last})

    rerun = ok(run_script("eval_steering_sweep.sh", roots["run"]))
    assert rerun.stdout.count("exists, skipping") == 3
    assert f"reusing generated answers from {run / last.replace('.csv', '.answers.csv')}" in rerun.stderr
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # the finished cells are not recomputed
    for name in cells:
        assert_same_table(run / name, reference / name)
    assert not list(run.glob("*.answers.*")) and not hidden_temporaries(run)
