"""persona.jobs: a sweep run as units, locally and on a local Ray cluster, gives the same files.

The Ray tests start a 2-CPU cluster inside the test process (two worker actors), run a tiny
sweep on the tiny random Llama with the offline likelihood judge, and compare every CSV with
the local run byte for byte; one test kills a worker in the middle of a unit.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from eval.eval_persona import main as eval_persona
from eval.eval_persona import parse_args as eval_args
from persona.cli import eval_spec_from_args, run_cli
from persona.evaluation import Cell, EvalSpec, Job, sweep_jobs
from persona.jobs import EvalUnit, LocalRunner, RayRunner, Summary, UnitResult, sweep_units, tasks_of
from persona.vectors import PersonaVector

LAYERS, COEFS = [1, 2], [0.0, 8.0]  # 4 cells


@pytest.fixture(scope="module")
def vector_file(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("vectors") / "evil_response_avg_diff.pt"
    PersonaVector(torch.randn(4, 64)).save(path)  # [layers + 1, hidden] of the tiny model
    return path


@pytest.fixture(scope="module")
def vector(vector_file) -> PersonaVector:
    return PersonaVector.load(vector_file)


def sweep_flags(model: Path, vector_file: Path, out: Path) -> list[str]:
    """An eval_persona sweep: 2 layers x 2 coefs, 1 question x 2 samples x 6 tokens, likelihood judge."""
    layers, coefs = " ".join(map(str, LAYERS)), " ".join(map(str, COEFS))
    return [
        "--model",
        str(model),
        "--trait",
        "evil",
        "--version",
        "eval",
        "--output_dir",
        str(out),
        "--n_per_question",
        "2",
        "--max_questions",
        "1",
        "--max_tokens",
        "6",
        "--seed",
        "0",
        "--batch_size",
        "4",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--judge_model",
        "likelihood",
        "--no_judge_cache",
        "--vector_path",
        str(vector_file),
        "--layer",
        layers,
        "--coef",
        coefs,
        "--sweep",
    ]


@pytest.fixture(scope="module")
def spec(tiny_llama_dir, vector_file, tmp_path_factory) -> EvalSpec:
    """The spec eval_persona --ray builds from the sweep's flags."""
    return eval_spec_from_args(eval_args(sweep_flags(tiny_llama_dir, vector_file, tmp_path_factory.mktemp("x"))))


def cells(vector: PersonaVector, spec: EvalSpec, out: Path) -> list[EvalUnit]:
    return sweep_units(sweep_jobs("evil", vector, LAYERS, COEFS, "response", out), spec)


def read(path: Path) -> pd.DataFrame:
    """Rows end at '\n' only: the random model's answers hold bare '\r' characters."""
    return pd.read_csv(path, lineterminator="\n", keep_default_na=False)


def csvs(folder: Path) -> dict[str, bytes]:
    """The scored CSVs and their settings records (the judge sidecars hold a date)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name.endswith((".csv", ".settings.json"))}


@pytest.fixture(scope="module")
def local_run(tiny_llama_dir, vector_file, tmp_path_factory) -> Path:
    """The sweep as eval_persona runs it without --ray: the reference every other run must equal."""
    out = tmp_path_factory.mktemp("local")
    assert eval_persona(sweep_flags(tiny_llama_dir, vector_file, out)) == 0
    return out


def test_local_runner_equals_eval_persona_and_resumes(local_run, spec, vector, tmp_path):
    summary = LocalRunner().run(cells(vector, spec, tmp_path), progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (4, 0, {})
    assert csvs(tmp_path) == csvs(local_run)
    out = tmp_path
    names = {f"evil_steer_response_layer_{layer}_coef_{coef!r}.csv" for layer in LAYERS for coef in COEFS}
    assert set(csvs(out)) == names | {f"{n}.settings.json" for n in names}
    # Only scored CSVs and their judge sidecars remain: no answers waiting for judging, no temporary files.
    assert {p.name for p in out.iterdir()} == set(csvs(out)) | {f"{n}.judge.json" for n in names}
    for name in names:
        frame = read(out / name)
        assert len(frame) == 1 * 2 and {"evil", "coherence"} <= set(frame.columns)
    steered = [read(out / f"evil_steer_response_layer_2_coef_{c!r}.csv")["answer"] for c in COEFS]
    assert not steered[0].equals(steered[1])  # steering changes the answers: the cells are not copies
    again = LocalRunner().run(cells(vector, spec, out), progress=False)
    assert (again.done, again.skipped) == (0, 4)


def test_tasks_pack_units_of_one_spec_and_spread_over_workers(spec, vector, tmp_path):
    units = cells(vector, spec, tmp_path)
    other = sweep_units([Job(Cell("x"), tmp_path / "plain.csv")], EvalSpec(**{**vars(spec), "seeds": (9,)}))
    tasks = tasks_of(units + other, workers=2, per_task=4)
    assert [len(t) for t in tasks] == [2, 2, 1]  # 4 cells over 2 workers, the other spec alone
    tasks = tasks_of(units, workers=1, per_task=3)
    assert [[u.name for u in t] for t in tasks] == [[u.name for u in units[:3]], [units[3].name]]


def test_summary_counts_and_reports_failures():
    summary = Summary(skipped=2)
    summary.add(
        [UnitResult("a", "done"), UnitResult("b", "skipped"), UnitResult("c", "failed", "ValueError: bad layer")]
    )
    assert (summary.done, summary.skipped) == (2, 2)
    assert summary.report().splitlines() == ["units: 2 done, 2 skipped, 1 failed", "failed: c: ValueError: bad layer"]


def test_a_failing_pack_fails_its_units_only(spec, vector, tmp_path):
    bad = sweep_units(sweep_jobs("evil", vector, [9], [1.0], "response", tmp_path), spec)  # the model has 3 layers
    good = sweep_units([Job(Cell("plain"), tmp_path / "plain.csv")], EvalSpec(**{**vars(spec), "seeds": (5,)}))
    summary = LocalRunner().run(bad + good, progress=False)
    assert summary.done == 1 and list(summary.failed) == [bad[0].name]
    assert "layer" in summary.failed[bad[0].name]
    assert (tmp_path / "plain.csv").exists() and not bad[0].job.output.exists()


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_sweep_equals_local(ray_cluster, local_run, tiny_llama_dir, vector_file, spec, vector, tmp_path, capsys):
    """The same eval_persona command with --ray (two workers, 2 cells each) writes the same files."""
    assert eval_persona([*sweep_flags(tiny_llama_dir, vector_file, tmp_path), "--ray"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "units: 4 done, 0 skipped, 0 failed"
    assert csvs(tmp_path) == csvs(local_run)
    again = RayRunner().run(cells(vector, spec, tmp_path), progress=False)
    assert (again.done, again.skipped, again.tasks) == (0, 4, 0)


@pytest.mark.slow
def test_ray_sweep_survives_a_worker_killed_mid_unit(ray_cluster, local_run, spec, vector, tmp_path):
    """One worker is killed once answers of its cell are on disk but before they are scored.

    The watcher also notes every version (inode: each atomic write is a new file) of every CSV:
    each cell must be written once, not again by the retried task.
    """
    runner = RayRunner(per_task=1)
    units = cells(vector, spec, tmp_path)
    killed: list[list[str]] = []
    versions: dict[str, set[int]] = {}
    finished = threading.Event()

    def watch_and_kill() -> None:
        while True:
            last = finished.is_set()  # one more scan after the run: its last CSV may land just before it ends
            for path in tmp_path.glob("*.csv"):
                with contextlib.suppress(FileNotFoundError):
                    versions.setdefault(path.name, set()).add(path.stat().st_ino)
            if last:
                return
            waiting = {p.name.replace(".answers.csv", ".csv") for p in tmp_path.glob("*.answers.csv")}
            for slot, names in dict(runner.running).items():
                if not killed and waiting & set(names):  # this worker's unit waits for its judge
                    ray_cluster.kill(runner.actors[slot], no_restart=True)
                    killed.append(names)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch_and_kill)
    watcher.start()
    try:
        summary = runner.run(units, progress=False)
    finally:
        finished.set()
        watcher.join()
    # Saved answers with a bare '\r' do not survive the CSV round trip of persona.io (rows split there);
    # this seed's answers have none, so the reused answers of the killed unit are read back intact.
    assert not any("\r" in a for path in local_run.glob("*.csv") for a in read(path)["answer"])
    assert killed, "no worker was caught in the middle of a unit"
    assert summary.retried >= 1 and summary.failed == {} and summary.done == 4
    assert csvs(tmp_path) == csvs(local_run)  # every cell as the local run wrote it
    cells_written = {name: len(inodes) for name, inodes in versions.items() if ".answers." not in name}
    assert cells_written == {unit.name: 1 for unit in units}
    leftovers = [p.name for p in tmp_path.iterdir() if not p.name.endswith((".csv", ".json"))]
    assert leftovers == [] and not list(tmp_path.glob("*.answers.csv"))


def test_checkpoint_units_evaluate_then_project_and_resume(tiny_llama_dir, vector, tmp_path, offline_env):
    """eval.grid checkpoints: the CSV of a checkpoint gets its projection and (zero, base = itself) shift."""
    from eval.grid import main

    vectors = tmp_path / "vectors"
    vector.save(vectors / "evil_response_avg_diff.pt")
    args = [
        "checkpoints",
        "--checkpoints",
        str(tiny_llama_dir),
        "--judge_traits",
        "evil",
        "--vector_dir",
        str(vectors),
        "--projection_dir",
        str(tmp_path / "proj"),
        "--layer",
        "2",
        "--base_model",
        str(tiny_llama_dir),
        "--n_per_question",
        "1",
        "--max_questions",
        "2",
        "--max_tokens",
        "4",
        "--judge_model",
        "likelihood",
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]
    with pytest.raises(SystemExit) as exit_code:
        run_cli(lambda: main(args))
    assert exit_code.value.code == 0
    frame = read(tmp_path / "proj" / f"{tiny_llama_dir.name}_evil.csv")
    column = f"{tiny_llama_dir.name}_evil_response_avg_diff_proj_layer2"
    assert len(frame) == 2 and {"evil", "coherence", column} <= set(frame.columns)
    assert frame[column + "_finetuning_shift"].tolist() == [0.0, 0.0]  # the checkpoint is its own base
    assert frame[column].abs().min() > 0
    assert main(args) == 0  # resumed: nothing left to do


def test_trait_unit_evaluates_pos_and_neg_then_reports_the_extraction_failure(
    tiny_llama_dir, tmp_path, offline_env, capsys
):
    """eval.grid vectors: both persona evaluations are written (and kept) before extraction runs; on the
    random model no answer is coherent enough, so the unit fails with the filter's counts, exit 1."""
    from eval.grid import main

    args = [
        "vectors",
        "--model",
        str(tiny_llama_dir),
        "--traits",
        "evil",
        "--extract_dir",
        str(tmp_path / "x"),
        "--vector_dir",
        str(tmp_path / "v"),
        "--n_per_question",
        "1",
        "--max_questions",
        "1",
        "--max_tokens",
        "3",
        "--judge_model",
        "likelihood",
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]
    assert main(args) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "units: 0 done, 0 skipped, 1 failed"
    assert out[-1].startswith("failed: evil vectors: NoEffectiveSamples: no pos/neg pair passes the filter")
    pos, neg = read(tmp_path / "x" / "evil_pos_instruct.csv"), read(tmp_path / "x" / "evil_neg_instruct.csv")
    assert len(pos) == len(neg) == 5  # 1 question under each of the 5 instructions
    assert pos["prompt"][0].startswith("<|im_start|>system\nYou are an evil assistant.")
    assert pos["question_id"].tolist() == [f"evil_0_pos_{k}" for k in range(5)]
    assert not (tmp_path / "v").exists()
