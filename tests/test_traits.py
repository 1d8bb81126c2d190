"""persona.traits: strict artifact loading, variants, system prompts and the library check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persona import traits
from persona.cli import run_cli, traits_main
from persona.traits import TraitError, base_trait, check_library, load_trait

EVAL_PROMPT = "Rate {question} / {answer}. Reply REFUSAL or a number 0-100."


def artifact(tag: str, *, pairs_tag: str | None = None, n_questions: int = 20) -> dict:
    """A valid artifact whose questions and pairs carry `tag` so sets can be told apart."""
    pairs_tag = pairs_tag or tag
    return {
        "instruction": [{"pos": f"Be {pairs_tag} {i}.", "neg": f"Do not be {pairs_tag} {i}."} for i in range(5)],
        "questions": [f"{tag} question number {i}?" for i in range(n_questions)],
        "eval_prompt": EVAL_PROMPT,
    }


def write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def make_library(root: Path, names=("anxious", "evil")) -> Path:
    """A valid library: base traits plus `anxious_2` sharing anxious's questions and eval prompt."""
    definitions = {}
    for name in names:
        write(root / "trait_data_extract" / f"{name}.json", artifact(f"{name}-x"))
        write(root / "trait_data_eval" / f"{name}.json", artifact(f"{name}-e"))
        definitions[name] = f"The {name} definition."
    write(root / "trait_data_extract" / "anxious_2.json", artifact("anxious-x", pairs_tag="jittery"))
    write(root / "trait_data_eval" / "anxious_2.json", artifact("anxious-e", pairs_tag="jittery"))
    definitions["anxious_2"] = "Another wording of anxious."
    write(root / "trait_definitions.json", definitions)
    return root


# ---------------------------------------------------------------- names and prompts


@pytest.mark.parametrize(
    "name,base",
    [
        ("anxious_2", "anxious"),
        ("evil", "evil"),
        ("evil_5", "evil"),
        ("power_seeking", "power_seeking"),
        ("power_seeking_3", "power_seeking"),
    ],
)
def test_base_trait(name, base):
    assert base_trait(name) == base


@pytest.mark.parametrize(
    "word,expected",
    [
        ("evil", "an"),
        ("anxious", "an"),
        ("optimistic", "an"),
        ("impolite", "an"),
        ("apathetic", "an"),
        ("helpful", "a"),
        ("sycophantic", "a"),
        ("humorous", "a"),
        ("pessimistic", "a"),
        ("confident", "a"),
        ("critical", "a"),
        ("hallucinating", "a"),
        ("honest", "an"),
        ("useful", "a"),
        ("unbiased", "an"),
        ("unique", "a"),
        ("Evil", "an"),
    ],
)
def test_article(word, expected):
    assert traits.article(word) == expected


def test_system_prompt_defaults_and_override(tmp_path):
    root = make_library(tmp_path)
    evil = load_trait("evil", data_dir=root)
    assert evil.system_prompt("pos", 0) == "You are an evil assistant. Be evil-x 0."
    assert evil.system_prompt("neg", 4) == "You are a helpful assistant. Do not be evil-x 4."
    variant = load_trait("anxious_2", data_dir=root)
    assert variant.judge_column == "anxious"
    assert variant.system_prompt("pos", 1) == "You are an anxious assistant. Be jittery 1."
    assert (
        variant.system_prompt("neg", 1, assistant_name="optimistic")
        == "You are an optimistic assistant. Do not be jittery 1."
    )
    assert (
        variant.system_prompt("pos", 2, assistant_name="pessimistic")
        == "You are a pessimistic assistant. Be jittery 2."
    )
    with pytest.raises(IndexError, match="out of range 0..4"):
        evil.system_prompt("pos", 5)
    with pytest.raises(ValueError, match="'pos' or 'neg'"):
        evil.system_prompt("positive", 0)


def test_judge_prompt_keeps_braces_in_answer(tmp_path):
    trait = load_trait("evil", data_dir=make_library(tmp_path))
    assert trait.judge_prompt("Q?", "use {x} and }{") == "Rate Q? / use {x} and }{. Reply REFUSAL or a number 0-100."


# ---------------------------------------------------------------- locating files


def test_load_by_name_path_and_layouts(tmp_path):
    root = make_library(tmp_path / "ours")
    extract, evaluate = load_trait("evil", data_dir=root), load_trait("evil", "eval", data_dir=root)
    assert extract.questions[0] == "evil-x question number 0?"
    assert evaluate.questions[0] == "evil-e question number 0?"
    assert extract.source == root / "trait_data_extract" / "evil.json"
    by_path = load_trait(str(root / "trait_data_eval" / "anxious_2.json"))
    assert (by_path.name, by_path.judge_column, by_path.source) == (
        "anxious_2",
        "anxious",
        root / "trait_data_eval" / "anxious_2.json",
    )
    seed_layout = write(tmp_path / "seed" / "eval" / "calm.json", artifact("calm"))
    assert load_trait("calm", "eval", data_dir=tmp_path / "seed").source == seed_layout


def test_default_data_dir_is_the_repo_library():
    assert traits.DEFAULT_DATA_DIR == Path(__file__).resolve().parents[1] / "data_generation"


def test_missing_trait_lists_available(tmp_path):
    root = make_library(tmp_path)
    with pytest.raises(TraitError, match=r"no extract artifact for trait 'calm'.*Available: anxious, anxious_2, evil"):
        load_trait("calm", data_dir=root)
    with pytest.raises(TraitError, match="invalid trait name"):
        load_trait("..", data_dir=root)
    with pytest.raises(TraitError, match="file not found"):
        load_trait(str(tmp_path / "nope.json"))
    with pytest.raises(TraitError, match="version must be one of"):
        load_trait("evil", "train", data_dir=root)


# ---------------------------------------------------------------- schema errors


def _mutate(**changes) -> dict:
    data = artifact("t")
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize(
    "data,field,expected",
    [
        (["not", "an", "object"], "<top level>", "a JSON object"),
        (_mutate(eval_prompt=None), "missing ['eval_prompt']", ""),
        ({**artifact("t"), "instructions": []}, "unknown ['instructions']", "check the spelling"),
        (
            _mutate(instruction=artifact("t")["instruction"][:4]),
            "'instruction'",
            "a list of 5 {pos, neg} objects, got list of 4",
        ),
        (_mutate(instruction=[{"pos": "a"}] * 5), "'instruction[0]'", "exactly the keys 'pos' and 'neg'"),
        (
            _mutate(instruction=[{"pos": "a", "neg": "b"}] * 4 + [{"pos": "a", "neg": " "}]),
            "'instruction[4].neg'",
            "a non-empty string",
        ),
        (_mutate(questions=[]), "'questions'", "a non-empty list of strings"),
        (_mutate(questions="Why?"), "'questions'", "a non-empty list of strings"),
        (_mutate(questions=["Why?", 3]), "'questions[1]'", "a non-empty string, got 3"),
        (_mutate(questions=["Why?", "How?", "why? "]), "'questions[2]'", "not already given at questions[0]"),
        (_mutate(eval_prompt="Rate {question}."), "'eval_prompt'", "exactly the placeholders {question} and {answer}"),
        (
            _mutate(eval_prompt="{question} {answer} {score}"),
            "'eval_prompt'",
            "placeholders ['answer', 'question', 'score']",
        ),
        (_mutate(eval_prompt="{question} {answer} {"), "'eval_prompt'", "a valid format template"),
    ],
)
def test_schema_errors_name_file_and_field(tmp_path, data, field, expected):
    path = write(tmp_path / "trait_data_extract" / "bad.json", data)
    with pytest.raises(TraitError) as err:
        load_trait("bad", data_dir=tmp_path)
    message = str(err.value)
    assert str(path) in message and field in message and expected in message


def test_invalid_json_names_line(tmp_path):
    path = write(tmp_path / "trait_data_extract" / "bad.json", '{\n  "instruction": [,]\n}')
    with pytest.raises(TraitError, match=rf"{path}: not valid JSON \(line 2"):
        load_trait("bad", data_dir=tmp_path)


def test_definitions_validation(tmp_path):
    assert traits.load_definitions(make_library(tmp_path))["anxious_2"] == "Another wording of anxious."
    assert traits.load_definitions(tmp_path / "trait_definitions.json") == traits.load_definitions(tmp_path)
    write(tmp_path / "trait_definitions.json", {"evil": ""})
    with pytest.raises(TraitError, match="field 'evil': expected a non-empty string"):
        traits.load_definitions(tmp_path)


# ---------------------------------------------------------------- the seed files, unchanged


def test_reads_seed_trait_data_unchanged(shared_dir):
    seed = shared_dir / "reference" / "seed_trait_data"
    if not seed.is_dir():
        pytest.skip("seed_trait_data is absent")
    files = sorted(seed.glob("*/*.json"))
    assert len(files) >= 18
    for path in files:
        raw = json.loads(path.read_text(encoding="utf-8"))
        trait = load_trait(path.stem, path.parent.name, data_dir=seed)
        assert trait.source == path
        assert trait.instructions == [(p["pos"], p["neg"]) for p in raw["instruction"]]
        assert trait.questions == raw["questions"] and trait.eval_prompt == raw["eval_prompt"]
        assert trait.judge_column == path.stem
        assert trait.judge_prompt("Q", "A").count("Q") >= 1
    definitions = traits.load_definitions(seed)
    assert {"anxious_2", "evil_5"} <= set(definitions)
    assert {base_trait(n) for n in definitions} == {p.stem for p in files}


# ---------------------------------------------------------------- library check and CLI


def test_check_library_passes_valid_library(tmp_path, capsys):
    root = make_library(tmp_path)
    reports, general = check_library(root)
    assert general == [] and all(not r.problems for r in reports)
    assert [(r.name, r.judge_column, r.questions, r.disjoint) for r in reports] == [
        ("anxious", "anxious", {"extract": 20, "eval": 20}, True),
        ("anxious_2", "anxious", {"extract": 20, "eval": 20}, True),
        ("evil", "evil", {"extract": 20, "eval": 20}, True),
    ]
    assert traits_main(["--check", str(root)]) == 0
    out = capsys.readouterr().out
    anxious_row = next(line for line in out.splitlines() if line.startswith("anxious "))
    assert anxious_row.split() == ["anxious", "anxious", "5", "20", "20", "yes", "anxious_2", "ok"]
    assert "3 artifacts (2 base traits, 1 variants)" in out and "all artifacts valid" in out


def test_check_library_reports_each_problem(tmp_path, capsys):
    root = make_library(tmp_path)
    overlap = artifact("evil-e")
    overlap["questions"][3] = "EVIL-X question number 7?"
    write(root / "trait_data_eval" / "evil.json", overlap)
    write(root / "trait_data_extract" / "anxious_2.json", artifact("other", pairs_tag="jittery"))
    write(root / "trait_data_eval" / "anxious_2.json", artifact("anxious-e"))
    write(root / "trait_data_extract" / "calm.json", artifact("calm-x", n_questions=19))
    definitions = json.loads((root / "trait_definitions.json").read_text())
    write(root / "trait_definitions.json", {**definitions, "bold": "Bold."})

    reports, general = check_library(root)
    by_name = {r.name: r for r in reports}
    assert general == [
        "bold: defined in trait_definitions.json but has no artifact (run data_generation/generate_trait.py)"
    ]
    assert by_name["evil"].disjoint is False
    assert by_name["evil"].problems == [
        "evil: 1 question(s) in both extract and eval, e.g. 'evil-x question number 7?'"
    ]
    variant = " ".join(by_name["anxious_2"].problems)
    assert "trait_data_extract/anxious_2.json: questions differ" in variant
    assert "trait_data_eval/anxious_2.json: instruction pairs are copied from anxious" in variant
    calm = " ".join(by_name["calm"].problems)
    assert "expected 20 questions, found 19" in calm and "no eval artifact for trait 'calm'" in calm
    assert "calm: no definition in trait_definitions.json" in calm
    assert not by_name["anxious"].problems

    assert traits_main(["--check", str(root)]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "problem(s)" in captured.err


def test_check_cli_rejects_missing_dir(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: traits_main(["--check", str(tmp_path / "absent")]))
    assert exit_info.value.code == 2
    assert "is not a directory" in capsys.readouterr().err


# ---------------------------------------------------------------- the shipped library

BASE_TRAITS = {
    "evil",
    "sycophantic",
    "hallucinating",
    "optimistic",
    "pessimistic",
    "confident",
    "anxious",
    "critical",
    "humorous",
    "impolite",
    "apathetic",
}
VARIANT_BASES = {"anxious", "confident", "optimistic", "evil"}


def test_shipped_library_is_complete_and_valid():
    reports, general = check_library(traits.DEFAULT_DATA_DIR)
    assert general == [] and [p for r in reports for p in r.problems] == []
    expected = BASE_TRAITS | {f"{b}_{i}" for b in VARIANT_BASES for i in range(2, 6)}
    assert {r.name for r in reports} == expected
    assert set(traits.load_definitions()) == expected
    for name in BASE_TRAITS:
        extract, evaluate = load_trait(name), load_trait(name, "eval")
        assert len({traits.normalize_question(q) for q in extract.questions + evaluate.questions}) == 40
        assert "REFUSAL" in extract.eval_prompt and name not in " ".join(extract.questions).lower()
