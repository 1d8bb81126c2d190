"""`eval.vector_quality --steer`: a steering sweep per method at its best held-out layers, on the tiny model."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from eval.vector_quality import main as vector_quality
from persona.fingerprint import read_record
from persona.judge.factory import JUDGE_KINDS, JudgeKind, register_judge
from persona.judge.runner import BaseJudge
from persona.vector_steering import STEER_FILE, steer_layers
from tests import test_extraction_cli, test_generate_vec

pair_csvs = test_generate_vec.pair_csvs  # the fixture: 4 pos/neg rows, 2 kept
FLOOR = 80.0


class _ToyJudge(BaseJudge):
    """Trait: the answer's length (capped at 100); coherence: 60 + length mod 41, so cells fall on both sides of 80."""

    def __init__(self, request) -> None:
        self.metric = request.metric

    async def __call__(self, *, question: str, answer: str) -> float | None:
        return float(min(len(answer), 100)) if self.metric != "coherence" else 60.0 + len(answer) % 41


@pytest.fixture
def toy_judge():
    register_judge(JudgeKind("toylen", "toylen", _ToyJudge, "toy: answer length"))
    yield "toylen"
    JUDGE_KINDS.pop("toylen")


def by_hand(cell: pd.DataFrame, baseline: pd.DataFrame) -> tuple[float, float, float]:
    """Paired delta over questions with its t interval, computed directly."""
    diff = cell.groupby("question_id")["evil"].mean() - baseline.groupby("question_id")["evil"].mean()
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    return diff.mean(), diff.mean() - half, diff.mean() + half


def test_steer_sweeps_each_method_at_its_best_layers_and_reports_at_the_coherence_floor(
    tiny_llama_dir, pair_csvs, tmp_path, toy_judge, capsys
):
    out = tmp_path / "vectors"
    extract = test_extraction_cli.extract
    assert extract(tiny_llama_dir, pair_csvs, out) == 0
    assert extract(tiny_llama_dir, pair_csvs, out, "--method", "probe", "--method_option", "folds=2") == 0
    for side, path in zip(("pos", "neg"), pair_csvs):  # held-out answers beside the extraction CSVs
        held = pd.read_csv(path)
        held["answer"] = held["answer"].str.upper()
        held.to_csv(path.parent / f"evil_{side}_eval.csv", index=False)

    argv = ["--model", str(tiny_llama_dir), "--trait", "evil", "--vector_dir", str(out), "--n_boot", "50", "--steer"]
    argv += ["--steer_layers", "2", "--steer_coefs", "1", "2", "--max_questions", "3", "--max_tokens", "8"]
    assert vector_quality([*argv, "--judge_model", toy_judge, "--device", "cpu"]) == 0

    quality = pd.read_csv(out / "vector_quality.csv")
    table = pd.read_csv(out / STEER_FILE)
    assert set(table["method"]) == {"baseline", "mean_diff", "probe"} and len(table) == 1 + 2 * 2 * 2
    baseline = pd.read_csv(out / "steer" / "evil_baseline.csv", keep_default_na=False)
    assert baseline["question_id"].nunique() == 3 and read_record(out / "steer" / "evil_baseline.csv")["steers"] == []
    for method, suffix in (("mean_diff", "diff"), ("probe", "probe")):
        rows = quality[(quality["vector_file"] == f"evil_response_avg_{suffix}.pt") & (quality["layer"] >= 1)]
        expected = rows.sort_values(["auroc", "layer"], ascending=[False, True])["layer"].head(2).tolist()
        assert steer_layers(quality, f"evil_response_avg_{suffix}.pt", 2) == expected
        cells = table[table["method"] == method]
        assert sorted(set(cells["layer"])) == sorted(expected) and set(cells["coef"]) == {1.0, 2.0}
        for row in cells.itertuples():
            layer = int(row.layer)  # the baseline row has no layer, so the column reads back as floats
            path = out / "steer" / method / f"evil_steer_response_layer_{layer}_coef_{row.coef!r}.csv"
            assert row.path == str(path)
            steers = read_record(path)["steers"]
            assert [(s["layer"], s["coef"]) for s in steers] == [(layer, row.coef)]
            cell = pd.read_csv(path, keep_default_na=False)
            assert cell["evil"].tolist() == [float(min(len(a), 100)) for a in cell["answer"]]  # the toy judged it
            assert row.trait_score == pytest.approx(cell["evil"].mean())
            assert row.coherence == pytest.approx(cell["coherence"].mean())
            assert row.clears_floor == (cell["coherence"].mean() >= FLOOR)
            assert (row.delta, row.delta_ci_low, row.delta_ci_high) == pytest.approx(by_hand(cell, baseline))
            auroc = rows.set_index("layer")["auroc"]
            assert row.auroc == pytest.approx(auroc[layer])
        coherent = cells[cells["clears_floor"]]
        best = cells[cells["best"]]
        if coherent.empty:
            assert best.empty
        else:  # the highest trait among coherent cells; ties to the smaller coef, then the lower layer
            top = coherent.sort_values(["trait_score", "coef", "layer"], ascending=[False, True, True]).iloc[0]
            assert best["path"].tolist() == [top["path"]]
    printed = capsys.readouterr().out
    assert "steering effect at coherence >= 80" in printed and "mean_diff:" in printed and "probe:" in printed

    capsys.readouterr()  # a rerun evaluates nothing again: every cell is found finished with these settings
    stamps = {p: p.stat().st_mtime_ns for p in (out / "steer").rglob("*.csv")}
    assert vector_quality([*argv, "--judge_model", toy_judge, "--device", "cpu"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "steer").rglob("*.csv")} == stamps
    assert json.loads((out / "steer" / "evil_baseline.csv.judge.json").read_text())["judge"] == toy_judge
