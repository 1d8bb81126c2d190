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
