"""Trait artifacts: strict loading, variant resolution and persona system prompts.

An artifact is one JSON file per trait and version (`extract` builds vectors, `eval`
scores them; their questions are disjoint so a vector is never judged on the questions
it was built from):

    {"instruction": [{"pos": str, "neg": str}, ... 5 pairs],
     "questions": [str, ... 20],
     "eval_prompt": "... {question} ... {answer} ..."}

Variants (`anxious_2`) are complete files with their own instruction pairs and the base
trait's questions and eval prompt; they share the base trait's judge column. The loader
reads both our layout (`trait_data_extract/`) and the seed layout (`extract/`).

`python -m persona.traits --check data_generation` validates a whole library.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from persona.errors import InputError

N_INSTRUCTIONS = 5
N_QUESTIONS = 20
Version = Literal["extract", "eval"]
VERSIONS: tuple[Version, ...] = ("extract", "eval")
DEFINITIONS_FILE = "trait_definitions.json"
# The trait library: the project's own, or another in the same layout (e.g. the original study's
# `data_generation/`, or a seed folder with extract/ and eval/) named by $PERSONA_TRAIT_DATA.
DEFAULT_DATA_DIR = Path(os.environ.get("PERSONA_TRAIT_DATA") or Path(__file__).resolve().parents[2] / "data_generation")
PLACEHOLDERS = frozenset({"question", "answer"})

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_VARIANT = re.compile(r"(?P<base>.+?)_(?P<n>\d+)")
_KEYS = ("instruction", "questions", "eval_prompt")


class TraitError(InputError):
    """An artifact is missing or malformed; the message names the file, field and fix."""


def base_trait(name: str) -> str:
    """The trait a variant belongs to: `anxious_2` -> `anxious`; `evil` -> `evil`."""
    match = _VARIANT.fullmatch(name)
    return match["base"] if match else name


def article(word: str) -> str:
    """`a` or `an` for `word`, by its first sound (an honest, a useful, an evil)."""
    w = word.lower()
    if w.startswith(("hon", "hour", "heir")):
        return "an"
    if w.startswith(("uni", "use", "usu", "uti", "eu", "one", "once")):
        return "a"
    return "an" if w[:1] in set("aeiou") else "a"


@dataclass
class Trait:
    """One trait artifact (one version); variants know the base trait's judge column."""

    name: str
    judge_column: str
    instructions: list[tuple[str, str]]
    questions: list[str]
    eval_prompt: str
    source: Path | None = None

    def system_prompt(self, kind: Literal["pos", "neg"], k: int, assistant_name: str | None = None) -> str:
        """`You are a/an <name> assistant. <instruction k>`; name defaults to the trait (pos) or `helpful` (neg)."""
        if kind not in ("pos", "neg"):
            raise ValueError(f"kind must be 'pos' or 'neg', got {kind!r}")
        if not 0 <= k < len(self.instructions):
            raise IndexError(f"{self.name}: instruction index {k} out of range 0..{len(self.instructions) - 1}")
        if assistant_name is None:
            assistant_name = self.judge_column if kind == "pos" else "helpful"
        instruction = self.instructions[k][0 if kind == "pos" else 1]
        return f"You are {article(assistant_name)} {assistant_name} assistant. {instruction}"

    def judge_prompt(self, question: str, answer: str) -> str:
        """The eval prompt filled in for one answer (braces in the answer stay literal)."""
        return self.eval_prompt.format(question=question, answer=answer)


# ---------------------------------------------------------------- validation


def _fail(source: Any, field: str, expected: str, got: Any = None) -> TraitError:
    shown = "" if got is None else f", got {_short(got)}"
    return TraitError(f"{source}: field {field!r}: expected {expected}{shown}")


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (list, dict)) else f"{type(value).__name__} of {len(value)}"
    return text if len(text) <= 80 else text[:77] + "..."


def _text(value: Any, source: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, field, "a non-empty string", value)
    return value


def placeholder_fields(template: str) -> set[str]:
    """The `{field}` names in a format template (ValueError on unbalanced braces)."""
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def parse_artifact(data: Any, *, name: str, source: Any = "<artifact>") -> Trait:
    """Validate the JSON of one artifact and build a `Trait`; every error names file and field."""
    if not isinstance(data, dict):
        raise _fail(source, "<top level>", f"a JSON object with keys {list(_KEYS)}", data)
    unknown = sorted(set(data) - set(_KEYS))
    missing = [k for k in _KEYS if k not in data]
    if unknown or missing:
        raise TraitError(
            f"{source}: expected exactly the keys {list(_KEYS)}; "
            f"missing {missing}, unknown {unknown} (check the spelling)"
        )

    pairs = data["instruction"]
    if not isinstance(pairs, list) or len(pairs) != N_INSTRUCTIONS:
        raise _fail(source, "instruction", f"a list of {N_INSTRUCTIONS} {{pos, neg}} objects", pairs)
    instructions = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, dict) or set(pair) != {"pos", "neg"}:
            raise _fail(source, f"instruction[{i}]", "an object with exactly the keys 'pos' and 'neg'", pair)
        instructions.append(
            (_text(pair["pos"], source, f"instruction[{i}].pos"), _text(pair["neg"], source, f"instruction[{i}].neg"))
        )

    questions = data["questions"]
    if not isinstance(questions, list) or not questions:
        raise _fail(source, "questions", "a non-empty list of strings", questions)
    seen: dict[str, int] = {}
    for i, q in enumerate(questions):
        _text(q, source, f"questions[{i}]")
        key = normalize_question(q)
        if key in seen:
            raise _fail(source, f"questions[{i}]", f"a question not already given at questions[{seen[key]}]", q)
        seen[key] = i

    prompt = _text(data["eval_prompt"], source, "eval_prompt")
    try:
        fields = placeholder_fields(prompt)
    except ValueError as e:
        raise _fail(source, "eval_prompt", f"a valid format template (double literal braces as {{{{ }}}}): {e}") from e
    if fields != PLACEHOLDERS:
        raise _fail(
            source, "eval_prompt", "exactly the placeholders {question} and {answer}", f"placeholders {sorted(fields)}"
        )
    return Trait(
        name=name,
        judge_column=base_trait(name),
        instructions=instructions,
        questions=list(questions),
        eval_prompt=prompt,
    )


def normalize_question(question: str) -> str:
    """Compare questions ignoring case and spacing (for duplicate and disjointness checks)."""
    return " ".join(question.lower().split())


def read_json(path: Path) -> Any:
    """Parse a JSON file; a syntax error names the file, line and column."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TraitError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


# ---------------------------------------------------------------- locating files


def version_dir(data_dir: str | Path | None, version: str) -> Path:
    """`<data_dir>/trait_data_<version>` (ours) or `<data_dir>/<version>` (seed layout)."""
    if version not in VERSIONS:
        raise TraitError(f"version must be one of {list(VERSIONS)}, got {version!r}")
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    ours = root / f"trait_data_{version}"
    seed = root / version
    return seed if not ours.is_dir() and seed.is_dir() else ours


def available_traits(data_dir: str | Path | None = None, version: str = "extract") -> list[str]:
    """Names of the artifacts of one version, sorted."""
    folder = version_dir(data_dir, version)
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def load_trait(name_or_path: str, version: Version = "extract", data_dir: str | Path | None = None) -> Trait:
    """Load a trait by name (from the library) or from a path to a `.json` artifact."""
    given = str(name_or_path)
    if given.endswith(".json") or "/" in given or "\\" in given:
        path = Path(given)
        if not path.is_file():
            raise TraitError(f"{path}: trait artifact file not found")
    else:
        if not _NAME.fullmatch(given):
            raise TraitError(f"invalid trait name {given!r}: use letters, digits, '_' or '-' (e.g. anxious_2)")
        folder = version_dir(data_dir, version)
        path = folder / f"{given}.json"
        if not path.is_file():
            known = available_traits(data_dir, version)
            raise TraitError(
                f"no {version} artifact for trait {given!r}: {path} does not exist. "
                f"Available: {', '.join(known) or 'none'}. "
                "Create it with data_generation/generate_trait.py or pass a path to a .json file."
            )
    trait = parse_artifact(read_json(path), name=path.stem, source=path)
    trait.source = path
    return trait


def load_definitions(path_or_dir: str | Path | None = None) -> dict[str, str]:
    """Trait name (variants included) -> definition, from a `.json` file or a library folder."""
    path = Path(path_or_dir) if path_or_dir is not None else DEFAULT_DATA_DIR
    if path.suffix != ".json":
        path = path / DEFINITIONS_FILE
    if not path.is_file():
        raise TraitError(f"{path}: trait definitions file not found")
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise _fail(path, "<top level>", "a JSON object mapping trait name to definition", data)
    for name, text in data.items():
        if not _NAME.fullmatch(name):
            raise TraitError(f"{path}: invalid trait name {name!r}: use letters, digits, '_' or '-'")
        _text(text, path, name)
    return data


# ---------------------------------------------------------------- library check


@dataclass
class TraitReport:
    """One row of the library check: counts per version and the problems found."""

    name: str
    judge_column: str
    pairs: int = 0
    questions: dict[str, int] = field(default_factory=dict)
    disjoint: bool | None = None
    problems: list[str] = field(default_factory=list)


def check_library(data_dir: str | Path) -> tuple[list[TraitReport], list[str]]:
    """Validate every artifact and definition under `data_dir`; return per-trait rows and global problems."""
    data_dir = Path(data_dir)
    general: list[str] = []
    try:
        definitions = load_definitions(data_dir)
    except TraitError as e:
        definitions = {}
        general.append(str(e))
    names = sorted(set(available_traits(data_dir, "extract")) | set(available_traits(data_dir, "eval")))
    if not names:
        general.append(f"{data_dir}: no artifacts in trait_data_extract/ or trait_data_eval/")
    for name in sorted(set(definitions) - set(names)):
        general.append(
            f"{name}: defined in {DEFINITIONS_FILE} but has no artifact (run data_generation/generate_trait.py)"
        )

    loaded: dict[tuple[str, str], Trait] = {}
    reports = []
    for name in names:
        report = TraitReport(name=name, judge_column=base_trait(name))
        for version in VERSIONS:
            try:
                trait = load_trait(name, version, data_dir)
            except TraitError as e:
                report.problems.append(str(e))
                continue
            loaded[name, version] = trait
            report.pairs = len(trait.instructions)
            report.questions[version] = len(trait.questions)
            if len(trait.questions) != N_QUESTIONS:
                report.problems.append(
                    f"{trait.source}: expected {N_QUESTIONS} questions, found {len(trait.questions)}"
                )
        if definitions and name not in definitions:
            report.problems.append(f"{name}: no definition in {DEFINITIONS_FILE}")
        reports.append(report)

    for report in reports:
        _check_pair_and_variant(report, loaded)
    return reports, general


def _check_pair_and_variant(report: TraitReport, loaded: dict[tuple[str, str], Trait]) -> None:
    name, base = report.name, report.judge_column
    extract, evaluate = loaded.get((name, "extract")), loaded.get((name, "eval"))
    if extract and evaluate:
        shared = {normalize_question(q) for q in extract.questions} & {
            normalize_question(q) for q in evaluate.questions
        }
        report.disjoint = not shared
        if shared:
            report.problems.append(
                f"{name}: {len(shared)} question(s) in both extract and eval, e.g. {sorted(shared)[0]!r}"
            )
    if base == name:
        return
    for version in VERSIONS:
        variant, parent = loaded.get((name, version)), loaded.get((base, version))
        if variant is None:
            continue
        if parent is None:
            report.problems.append(f"{name}: variant of {base!r}, but {base} has no valid {version} artifact")
            continue
        if variant.questions != parent.questions:
            report.problems.append(f"{variant.source}: questions differ from {parent.source} (variants share them)")
        if variant.eval_prompt != parent.eval_prompt:
            report.problems.append(f"{variant.source}: eval_prompt differs from {parent.source} (variants share it)")
        if variant.instructions == parent.instructions:
            report.problems.append(
                f"{variant.source}: instruction pairs are copied from {base}; "
                "write them from the variant's own definition"
            )


def format_table(reports: Sequence[TraitReport]) -> str:
    """A plain-text table: trait, judge column, pairs, question counts, disjointness, variants, status."""
    variants = {
        r.name: sorted(v.name for v in reports if v.judge_column == r.name and v.name != r.name) for r in reports
    }
    header = ("trait", "judge", "pairs", "extract_q", "eval_q", "disjoint", "variants", "status")
    rows = [header]
    for r in reports:
        q = r.questions
        disjoint = {True: "yes", False: "NO", None: "-"}[r.disjoint]
        rows.append(
            (
                r.name,
                r.judge_column,
                str(r.pairs),
                str(q.get("extract", "-")),
                str(q.get("eval", "-")),
                disjoint,
                ",".join(variants[r.name]) or "-",
                "ok" if not r.problems else "FAIL",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
