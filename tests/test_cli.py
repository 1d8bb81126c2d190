import argparse

import pytest

from persona.cli import split_list


def test_split_list_accepts_separate_and_quoted_forms():
    assert split_list(["20", "25"], int) == [20, 25]
    assert split_list("20 25", int) == [20, 25]
    assert split_list(["a.pt b.pt", "c.pt"]) == ["a.pt", "b.pt", "c.pt"]
    assert split_list(["1.5,-1.0"], float) == [1.5, -1.0]
    assert split_list(None) == []


def test_split_list_rejects_bad_values():
    with pytest.raises(argparse.ArgumentTypeError, match="'x'"):
        split_list(["1", "x"], int)


def test_run_cli_turns_input_errors_into_one_line_and_exit_2(capsys):
    from persona.cli import run_cli

    def bad() -> int:
        raise ValueError("layer 99 is out of range")

    with pytest.raises(SystemExit) as exit_info:
        run_cli(bad)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: layer 99 is out of range"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: 0)
    assert exit_info.value.code == 0
