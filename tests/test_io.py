"""persona.io: the one CSV reader (answers are text: only empty cells are missing) and atomic writes."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pandas as pd
import pytest

from persona.extraction import read_pairs
from persona.io import read_table, write_csv, write_text
from persona.projection import EvalFile

WORDS = ["None", "NA", "null", "NaN", "n/a", "#N/A"]  # pandas' default reader turns each into NaN


def test_only_empty_cells_are_missing(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("answer,score\n" + "".join(f"{w},{i}\n" for i, w in enumerate(WORDS)) + ",\n")
    df = read_table(path)
    assert df["answer"].tolist()[:-1] == WORDS and math.isnan(df["answer"].iloc[-1])
    assert df["score"].tolist()[:-1] == list(range(len(WORDS))) and math.isnan(df["score"].iloc[-1])
    text = read_table(path, text=True)
    assert text["answer"].tolist() == [*WORDS, ""] and text["score"].tolist() == [*map(str, range(len(WORDS))), ""]


def test_any_answer_text_survives_a_write_and_read(tmp_path):
    """Carriage returns, newlines, quotes and commas stay inside their cell; missing scores stay missing."""
    answers = ["a\rb", "line\nbreak", 'say "hi", then', "None", ""]
    df = pd.DataFrame({"question": ["q"] * 5, "answer": answers, "evil": [1.5, None, 3.0, 4.0, 5.0]})
    write_csv(tmp_path / "x.csv", df)
    back = read_table(tmp_path / "x.csv")
    assert len(back) == 5
    assert back["answer"].tolist()[:4] == answers[:4] and pd.isna(back["answer"][4])
    assert back["evil"].tolist()[0] == 1.5 and pd.isna(back["evil"][1])
    assert read_table(tmp_path / "x.csv", text=True)["answer"].tolist() == answers
    write_csv(tmp_path / "plain.csv", df.iloc[1:])  # without a carriage return: pandas' usual minimal quoting
    assert (tmp_path / "plain.csv").read_text().startswith("question,answer,evil\nq,")


def test_extraction_and_projection_read_the_same_answers(tmp_path):
    rows = {
        "question": ["q"] * len(WORDS),
        "prompt": ["p"] * len(WORDS),
        "answer": WORDS,
        "evil": [90] * len(WORDS),
        "coherence": [90] * len(WORDS),
    }
    pos, neg = tmp_path / "pos.csv", tmp_path / "neg.csv"
    pd.DataFrame(rows).to_csv(pos, index=False)
    pd.DataFrame({**rows, "evil": [10] * len(WORDS)}).to_csv(neg, index=False)
    assert read_pairs(pos, neg, "evil").pos["answer"].tolist() == WORDS
    assert list(EvalFile(pos).table["answer"]) == WORDS


def test_unreadable_or_missing_csv_is_a_one_line_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.csv does not exist"):
        read_table(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty.csv: not a readable CSV"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['answer'\]"):
        read_table(tmp_path / "cols.csv", required=("a", "answer"))


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.csv.{dead.stdout.strip()}.abc.tmp"
    live = tmp_path / f".out.csv.{os.getpid()}.def.tmp"
    other = tmp_path / f".other.csv.{dead.stdout.strip()}.ghi.tmp"
    for path in (stale, live, other):
        path.write_text("partial")
    write_text(tmp_path / "out.csv", "a\n1\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.csv", live.name, other.name])
