"""viz.report: one self-contained page, checked for content and opened in headless Chromium.

The browser (`tests/chromium.py`) is driven over the DevTools protocol on a pipe: console errors,
uncaught exceptions and failed loads are collected, and a screenshot is taken. Without Debian's
`chromium` the browser tests skip (CI installs it via .ci/run).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from persona.cli import run_cli  # noqa: E402
from persona.evaluation import sweep_filename  # noqa: E402
from tests.chromium import open_browser  # noqa: E402
from viz import report  # noqa: E402


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
    assert not re.search(r"""(src|href)=["'](?!data:)""", page), "the page must not load anything from outside"
    assert "<script" not in page
    scores = report.collect(root).scores["cells"].set_index("cell")
    assert scores.loc["evil_steer_response_layer_20_coef_1.0", "evil"] == 20.0  # (10 + 30) / 2
    assert scores.loc["evil_steer_response_layer_20_coef_2.0", "evil"] == 50.0  # unscored rows are skipped
    assert scores.loc["evil_steer_response_layer_20_coef_2.0", "n"] == 2
    assert "<td>20.000</td>" in page and "<td>85.000</td>" in page  # evil and coherence means
    assert "smollm2-135m" in page and "likelihood" in page and "<td>0.250</td>" in page
    assert "q &lt;1&gt;" not in page  # answers and questions are not dumped, only means


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
        '<script>console.error("boom"); console.log("plain-log-line"); undefinedFunction();</script>'
        "</body></html>"
    )
    errors, _ = browser.open(page.as_uri())
    text = "\n".join(errors)
    assert "console: boom" in text and "undefinedFunction" in text and "missing.png" in text
    assert "plain-log-line" not in text  # a plain log is not an error


def test_report_opens_in_chromium_without_errors(tmp_path, browser):
    root = _results(tmp_path / "run")
    assert report.main([str(root), "--out", str(tmp_path / "page" / "report.html")]) == 0
    errors, shot = browser.open((tmp_path / "page" / "report.html").as_uri())
    assert errors == []
    (tmp_path / "screenshot.png").write_bytes(shot)
    assert _nonblank(shot)
