import argparse

import pytest
import torch

from persona.cli import load_steers, split_list
from persona.vectors import save_vector


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


def test_load_steers_pairs_and_broadcasts(tmp_path):
    vectors = {
        name: torch.randn(4, 8, generator=torch.Generator().manual_seed(seed)) for name, seed in (("a", 1), ("b", 2))
    }
    for name, vector in vectors.items():
        save_vector(tmp_path / f"{name}.pt", vector)
    steers = load_steers([str(tmp_path / "a.pt"), str(tmp_path / "b.pt")], [1, 2], [0.5])
    assert [(s.layer, s.coef) for s in steers] == [(1, 0.5), (2, 0.5)]
    torch.testing.assert_close(steers[1].vector.tensor, vectors["b"])
    with pytest.raises(ValueError, match="--vector_path has 2 values but 3 are needed"):
        load_steers([str(tmp_path / "a.pt"), str(tmp_path / "b.pt")], [1], [1, 2, 3])


def test_library_parameters_become_the_running_cli_flags(tmp_path, capsys):
    import argparse

    from persona.cli import run_cli

    def main() -> int:
        parser = argparse.ArgumentParser()
        parser.add_argument("--overwrite", action="store_true")
        parser.parse_args([])
        raise ValueError("out.csv exists: pass `overwrite` to recompute, or set `no_such_flag`")

    with pytest.raises(SystemExit) as stop:
        run_cli(main)
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: out.csv exists: pass --overwrite to recompute, or set `no_such_flag`"
    )
