"""viz.report: one self-contained page, checked for content and opened in headless Chromium.

The browser (`tests/chromium.py`) is driven over the DevTools protocol on a pipe: console errors,
uncaught exceptions and failed loads are collected, and a screenshot is taken. Without Debian's
`chromium` the browser tests skip (CI installs it via .ci/run).
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from persona.analysis.headline import held_out_headlines, held_out_rows  # noqa: E402
from persona.analysis.stats import Interval  # noqa: E402
from persona.cli import run_cli  # noqa: E402
from persona.evaluation import sweep_filename  # noqa: E402
from study.demo import DemoSettings  # noqa: E402
from study.demo.paths import cell_files  # noqa: E402
from tests.chromium import open_browser  # noqa: E402
from tests.demo_layout import QUOTED, XSS, build_demo_output  # noqa: E402
from viz import report  # noqa: E402
from viz.report import html  # noqa: E402
from viz.report.experiments import projection_label  # noqa: E402
from viz.report.intervals import interval_text, mean_text, score_text  # noqa: E402


@pytest.fixture
def browser(tmp_path):
    with open_browser(tmp_path / "profile") as b:
        yield b


def _png(path: Path, seed: float) -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [0, seed, 1])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _results(root: Path) -> Path:
    """A small results folder: settings, a judge sidecar, two sweep cells, a table, two figures."""
    cells = root / "cells"
    cells.mkdir(parents=True)
    for coef, scores in ((1.0, [10.0, 30.0]), (2.0, [50.0, None])):
        pd.DataFrame(
            {
                "question": ["q <1>", "q2"],
                "prompt": ["p", "p"],
                "answer": ["a & b", ""],
                "question_id": ["evil_0", "evil_1"],
                "evil": scores,
                "coherence": [80.0, 90.0],
            }
        ).to_csv(cells / sweep_filename("evil", "response", 20, coef), index=False)
    (root / "settings.json").write_text(json.dumps({"model": "smollm2-135m", "layer": 20, "traits": ["evil"]}))
    (cells / "x.csv.judge.json").write_text(json.dumps({"judge": "likelihood"}))
    pd.DataFrame({"a": [1.0], "b": [1.0], "metric": ["evil"], "residual": [0.25]}).to_csv(
        root / "linearity.csv", index=False
    )
    _png(root / "linearity_residuals.png", 0.3)
    _png(root / "figs" / "extra.png", 0.9)
    return root


def test_report_content(tmp_path, capsys):
    root = _results(tmp_path / "run")
    assert report.main([str(root)]) == 0
    page = (root / "report.html").read_text()
    assert "wrote" in capsys.readouterr().out
    assert page.count('src="data:image/png;base64,') == 2
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page), "the page must not load anything from outside"
    assert "<script" not in page
    (sweep,) = report.collect(root).sweeps
    table = sweep.table.set_index("cell")
    assert table.loc["layer 20, coef 1", "trait"] == 20.0  # (10 + 30) / 2
    assert table.loc["layer 20, coef 2", "trait"] == 50.0  # unscored rows are skipped
    assert table.loc["layer 20, coef 2", "n"] == 2
    # evil 10, 30 on 2 questions: se = sqrt(2 * (10^2 + 10^2)) / 2 = 10, t(0.975, 1) = 12.706: 20 [-107, 147];
    # coherence 80, 90: se 5, half-width 63.5: 85 [21, 149] (two questions give almost no certainty); a mean
    # score lies in 0..100, so the bounds are shown cut there (rounded by the full width: whole numbers)
    assert "<td>20 [0, 100]</td><td>85 [21, 100]</td>" in page
    assert "smollm2-135m" in page and "likelihood" in page and "<td>0.250</td>" in page
    assert "q &lt;1&gt;" in page and "a &amp; b" in page  # questions and answers are shown, escaped
    assert "no unsteered baseline to compare with" in page


def test_numbers_are_rounded_to_their_interval():
    # with an interval: Interval.text (two significant figures of the half-width); without: 3 significant digits
    frame = pd.DataFrame({"question_id": ["a", "b", "c"], "x": [40.0, 50.0, 60.0]})
    # mean 50, CR1 se = sqrt(3/2 * 200) / 3 = 5.77, t(0.975, 2) = 4.303: half-width 24.8 -> whole numbers
    assert mean_text(frame, "x") == "50 [25, 75]"
    assert mean_text(frame.assign(x=[0.40, 0.50, 0.60]), "x") == "0.50 [0.25, 0.75]"
    assert mean_text(frame.drop(columns="question_id"), "x") == "50.0"  # no questions: the mean alone
    assert mean_text(frame.iloc[:1], "x") == "40.0"  # one question: no interval
    assert html.number(85.0) == "85.0" and html.number(0.25) == "0.250" and html.number(1234.5) == "1234"


def test_score_intervals_stay_on_the_judge_scale():
    # the demo's coherence at layer 6, coef 3 on 5 questions: 97.1 [89.7, 104.6]; no mean score exceeds 100
    assert score_text(Interval(5, 5, 97.14, 89.71, 104.57)) == "97.1 [89.7, 100.0]"
    assert score_text(Interval(5, 5, 36.1, -14.2, 86.4)) == "36 [0, 86]"  # half-width 50: whole numbers
    assert score_text(Interval(5, 5, 62.0, 48.1, 75.9)) == "62 [48, 76]"  # inside the scale: as it is
    assert score_text(Interval(5, 5, -20.0, -130.0, 90.0), signed=True) == "-20 [-130, +90]"  # a gain is not cut
    assert score_text(Interval(1, 2, 40.0, math.nan, math.nan)) == "40.0"  # no interval: the mean alone
    # the demo's evil L10 projection of one cell: 4.6 [-0.04, 9.2] rounds its low bound to zero, not to "-0.0"
    assert interval_text(Interval(5, 5, 4.6, -0.04, 9.2)) == "4.6 [0.0, 9.2]"
    assert interval_text(Interval(5, 5, -0.004, -0.5, 0.48), signed=True) == "+0.00 [-0.50, +0.48]"


def test_projection_columns_get_short_headers():
    assert projection_label("smollm2-135m_evil_response_avg_diff_proj_layer10") == "evil L10"
    assert projection_label("evil_plain_evil_response_avg_diff_proj_layer10_finetuning_shift") == "evil L10 shift"
    assert (
        projection_label("m_evil_2_prompt_last_diff_prompt_last_proj_layer3")
        == "evil_2 prompt_last prompt_last_proj L3"
    )
    assert projection_label("coherence") is None


def _ids_in_order(page: str, ids: list[str]) -> list[int]:
    return [page.index(f'id="{i}"') for i in ids]


def test_report_on_the_demo_layout_has_every_section_in_order(tmp_path):
    paths = build_demo_output(tmp_path / "demo")
    assert report.main([str(paths.out)]) == 0
    page = paths.report.read_text()
    top = ["findings", "run-summary", "headline", "figures", "experiments", "answers", "provenance"]
    experiments = ["steering-sweep", "projections", "finetuning", "interference", "geometry", "other-results"]
    for ids in (top, experiments):
        positions = _ids_in_order(page, ids)
        assert positions == sorted(positions), ids
    assert page.index('id="experiments"') < page.index('id="steering-sweep"') < page.index('id="answers"')
    # the headline: README's real run, evil 11.0 -> 72.6 at layer 10, coef 2.5 (coherence 99.5). Baseline
    # answers 11 + 0.55 * (8, 20, -20, -8, 0): CR1 se = sqrt(5/4 * 0.3025 * 928) / 5 = 3.746, t(0.975, 4) = 2.776,
    # half-width 10.4 -> whole numbers: 11 [1, 21]
    assert "<strong>steering effect: the 95% interval of the gain lies above 0</strong>" in page
    assert (
        "baseline evil 11 [1, 21], coherence 99.9 [99.8, 100.0] &rarr; "
        "cell chosen on the selection questions (layer 10, coef 2.5)" in page
    )
    assert "evil 73 [54, 92], coherence 99.5 [99.0, 100.0]; gain +62 [+37, +87]" in page
    assert "3 of 9 steered cells fell below coherence 80" in page
    assert "Chosen on 5 selection questions (evil_0, evil_1, evil_2, evil_3, evil_4), measured on 5 other" in page
    assert "evil_4; ids are numbered within each set)." in page  # the demo's two sets
    # the summary names each sweep once, with the folders it ran in (selection/ chooses, steering/ measures)
    summary = page[page.index('id="run-summary"') :][:1200]
    assert summary.count("for evil and pessimistic, ") == 1 and "in each of selection/, steering/" in summary
    assert "offline likelihood proxy" in page and "smollm2-135m" in page
    # the quoted answer is the best cell's median one, highlighted beside the baseline's answer to that question
    quoted = page[page.index('class="answer quoted"') :][:600]
    assert html.esc(QUOTED) in quoted
    assert page.count("below coherence 80: not a result") == 3
    # provenance is all there, at the end: 47 judge sidecars (20 of the selection cells),
    # both training configs, vector metadata, settings
    provenance = page[page.index('id="provenance"') :]
    for name in ("judge sidecars (47 files)", "finetune/evil_steer.json", "vectors/evil_vectors.json", "settings.json"):
        assert name in provenance
    assert "<details open" not in page
    assert "r undefined (2 points): r needs 3+ pairs, so 3+ traits" in page  # two traits: never `r = nan`
    assert "two traits give one cosine, shared by both points" in page  # the figure's caption says why


def test_no_steering_effect_is_said_plainly(tmp_path):
    paths = build_demo_output(tmp_path / "demo")
    for cell in paths.out.glob("steering/pessimistic_steer_*.csv"):
        df = pd.read_csv(cell).assign(coherence=50.0)
        df.to_csv(cell, index=False)
    assert report.main([str(paths.out / "steering")]) == 0
    page = (paths.out / "steering" / "report.html").read_text()
    assert "<strong>no steering effect: none of the 9 steered cells kept mean coherence &ge; 80</strong>" in page
    # chosen and measured here (no headline.csv in the sweep folder): the best coherent cell, named so
    assert "&rarr; best coherent cell (layer 10, coef 2.5)" in page and "chosen on the selection" not in page


def test_held_out_headline_names_both_question_sets(tmp_path):
    paths = build_demo_output(tmp_path / "demo")
    s = DemoSettings(out=str(paths.out))
    report_files = {t: cell_files(s, paths, t) for t in s.traits}
    selection_files = {}
    for t, files in report_files.items():  # the same cells asked other questions: the selection set
        selection_files[t] = []
        for path in files:
            df = pd.read_csv(path)
            df = df.assign(question="(selection) " + df["question"], question_id="sel_" + df["question_id"])
            df.to_csv(tmp_path / path.name, index=False)
            selection_files[t].append(tmp_path / path.name)
    headlines = held_out_headlines(selection_files, report_files, {t: t for t in s.traits})
    held_out_rows(headlines).to_csv(paths.headline, index=False)
    assert report.main([str(paths.out)]) == 0
    page = paths.report.read_text()
    assert "Chosen on 5 selection questions (sel_evil_0, sel_evil_1, sel_evil_2, sel_evil_3, sel_evil_4)" in page
    assert "measured on 5 other questions (evil_0, evil_1, evil_2, evil_3, evil_4)." in page  # distinct ids: no note
    assert "same 5 questions" not in page


def test_report_on_one_experiment_folder(tmp_path):
    paths = build_demo_output(tmp_path / "demo")
    assert report.main([str(paths.interference)]) == 0
    page = (paths.interference / "report.html").read_text()
    assert "No steering results in this folder" in page
    positions = _ids_in_order(page, ["findings", "figures", "experiments", "interference", "provenance"])
    assert positions == sorted(positions)
    assert 'id="answers"' not in page


def _exit_line(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        run_cli(lambda: report.main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_report_bad_input(tmp_path, capsys):
    err = _exit_line([str(tmp_path)], capsys)
    assert str(tmp_path) in err and "*.csv, *.png" in err
    (tmp_path / "broken.csv").write_bytes(b'a,b\n"unclosed,1\n')
    err = _exit_line([str(tmp_path)], capsys)
    assert "broken.csv: not a readable CSV" in err


def _nonblank(png: bytes) -> bool:
    image = mpimg.imread(io.BytesIO(png), format="png")
    return image.shape[0] > 100 and image[..., :3].std() > 0.01


def test_browser_helper_catches_console_errors(tmp_path, browser):
    # the negative control: a broken page must be caught, or the clean result below means nothing
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><h1>x</h1><img src="missing.png">'
        '<script>console.error("boom"); console.log("plain-log-line"); alert("dialog-1"); undefinedFunction();</script>'
        "</body></html>"
    )
    errors, _ = browser.open(page.as_uri())
    text = "\n".join(errors)
    assert "console: boom" in text and "undefinedFunction" in text and "missing.png" in text
    assert "dialog: alert dialog-1" in text
    assert "plain-log-line" not in text  # a plain log is not an error


def test_report_opens_in_chromium_without_errors(tmp_path, browser):
    root = _results(tmp_path / "run")
    assert report.main([str(root), "--out", str(tmp_path / "page" / "report.html")]) == 0
    errors, shot = browser.open((tmp_path / "page" / "report.html").as_uri())
    assert errors == []
    (tmp_path / "screenshot.png").write_bytes(shot)
    assert _nonblank(shot)


PAGE_CHECKS = """({
  order: [...document.body.children].map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')),
  provenance: [...document.querySelectorAll('#provenance details')].map(d => d.open),
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: window.innerWidth,
  headlineTop: document.querySelector('.finding').getBoundingClientRect().top,
  innerHeight: window.innerHeight,
  scripts: document.scripts.length,
  answersText: document.getElementById('answers').innerText,
})"""


def test_demo_report_in_chromium(tmp_path, browser):
    paths = build_demo_output(tmp_path / "demo", xss=True)
    wide = {f"smollm2-135m_pessimistic_response_avg_diff_proj_layer{i}": [1.0] for i in range(40)}
    pd.DataFrame({"cell": ["baseline"], **wide}).to_csv(paths.out / "projection" / "wide_projections.csv", index=False)
    assert report.main([str(paths.out)]) == 0
    errors, shot = browser.open(paths.report.as_uri(), width=1280, height=800)
    assert errors == []  # no console errors, failed loads or dialogs (the answer's alert(1) never ran)
    page = browser.evaluate(PAGE_CHECKS)
    assert page["order"] == [
        "header",
        "section#findings",
        "section#figures",
        "section#experiments",
        "section#answers",
        "section#provenance",
    ]
    assert len(page["provenance"]) > 30 and not any(page["provenance"])
    assert page["scrollWidth"] <= page["innerWidth"] == 1280
    assert 0 <= page["headlineTop"] < page["innerHeight"] == 800
    assert page["scripts"] == 0 and XSS in page["answersText"]
    assert _nonblank(shot)
