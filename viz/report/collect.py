"""Find what a results folder holds: steering sweeps, other evaluations, tables, figures, provenance records.

The report works on whatever is there (a whole demo folder, one sweep folder, one
experiment folder), so files are recognised by their names (the output layout of
`persona.evaluation.sweep_filename`, `{trait}_baseline.csv`, `*.judge.json`, ...), not by
where a particular command put them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from persona.analysis.headline import cell_table
from persona.analysis.results import parse_sweep_name
from persona.io import read_table
from persona.traits import base_trait

TEXT_COLUMNS = ("question", "prompt", "answer", "question_id")
BASELINE_SUFFIX = "_baseline.csv"
MAX_JSON_BYTES = 1 << 20  # model and tokenizer files in checkpoint folders are not provenance records
# provenance category -> how its files are recognised (name patterns; training configs also by content)
PROVENANCE = {
    "settings": ("settings.json", "*.settings.json"),
    "judge sidecars": ("*.judge.json",),
    "training configs and results": ("training_config.json", "training_results.json"),
    "vector metadata": ("*_vectors.json",),
    "projection records": ("*.projections.json",),
}


@dataclass
class Sweep:
    """One trait's unsteered baseline and steering sweep cells in one folder (either may be missing)."""

    trait: str
    folder: str
    baseline: Path | None
    cells: list[Path]
    steering_type: str | None

    @property
    def column(self) -> str:
        """The judge column of the trait (a variant `evil_2` is judged as `evil`)."""
        return base_trait(self.trait)

    @property
    def files(self) -> list[Path]:
        return ([self.baseline] if self.baseline else []) + self.cells

    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per cell: means with their intervals, n, path, coherent (`persona.analysis.headline.cell_table`)."""
        return cell_table(self.files, self.column)


@dataclass
class Report:
    """What a results folder holds, found and read."""

    root: Path
    records: dict[str, dict[str, object]] = field(default_factory=dict)  # category -> {relative path: JSON}
    sweeps: list[Sweep] = field(default_factory=list)
    evaluations: dict[str, pd.DataFrame] = field(default_factory=dict)  # relative path -> evaluation CSV
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # relative path -> other CSV
    figures: dict[str, bytes] = field(default_factory=dict)  # relative path -> PNG bytes
    written: tuple[float, float] | None = None  # (first, last) modification time of the files read

    @property
    def empty(self) -> bool:
        return not (self.records or self.evaluations or self.tables or self.figures)

    @property
    def settings(self) -> dict[str, object]:
        """Every provenance record by relative path."""
        return {name: rec for group in self.records.values() for name, rec in group.items()}

    @property
    def scores(self) -> dict[str, pd.DataFrame]:
        """Folder -> one row per evaluation CSV outside a sweep: cell (file stem), n and every score's mean."""
        in_sweeps = {self.relative(p) for s in self.sweeps for p in s.files}
        rows: dict[str, list[dict]] = {}
        for name, df in self.evaluations.items():
            if name not in in_sweeps:
                folder = str(Path(name).parent)
                rows.setdefault(folder, []).append({"cell": Path(name).stem, "n": len(df), **cell_scores(df)})
        return {folder: pd.DataFrame(r) for folder, r in rows.items()}

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def traits(self) -> list[str]:
        """The traits the top settings name, else those of the sweeps found."""
        named = self.project_settings().get("traits")
        return [str(t) for t in named] if isinstance(named, list) else sorted({s.trait for s in self.sweeps})

    def project_settings(self) -> dict[str, object]:
        """The top folder's `settings.json` (a demo's or an experiment's), or {}."""
        rec = self.records.get("settings", {}).get("settings.json")
        return rec if isinstance(rec, dict) else {}


def score_columns(df: pd.DataFrame) -> list[str]:
    """The numeric columns of an evaluation CSV: judged traits, coherence, projections."""
    return [c for c in df.columns if c not in TEXT_COLUMNS and pd.to_numeric(df[c], errors="coerce").notna().any()]


def cell_scores(df: pd.DataFrame) -> dict[str, float]:
    """Mean of every score column over its scored rows."""
    return {c: float(pd.to_numeric(df[c], errors="coerce").mean()) for c in score_columns(df)}


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _category(path: Path) -> str | None:
    for category, patterns in PROVENANCE.items():
        if any(path.match(p) for p in patterns):
            return category
    return None


def _sweeps(frames: dict[Path, pd.DataFrame], root: Path) -> list[Sweep]:
    """Group baselines and sweep cells by folder and trait (cells ordered by layer, then coef).

    A file without its trait's judge column or coherence is left to the other evaluations.
    """
    groups: dict[tuple[Path, str], dict] = {}
    for path, df in frames.items():
        parsed = parse_sweep_name(path.name)
        if parsed:
            trait = parsed[0]
        elif path.name.endswith(BASELINE_SUFFIX):
            trait = path.name[: -len(BASELINE_SUFFIX)]
        else:
            continue
        if not {base_trait(trait), "coherence"} <= set(df.columns):
            continue
        g = groups.setdefault((path.parent, trait), {"baseline": None, "cells": [], "types": set()})
        if parsed:
            g["cells"].append(((parsed[2], parsed[3]), path))
            g["types"].add(parsed[1])
        else:
            g["baseline"] = path
    return [
        Sweep(
            trait,
            str(folder.relative_to(root)),
            g["baseline"],
            [p for _, p in sorted(g["cells"])],
            "/".join(sorted(g["types"])) or None,
        )
        for (folder, trait), g in sorted(groups.items())
    ]


def collect(root: str | Path) -> Report:
    """Read every result CSV, PNG and provenance JSON under `root` (sorted, so the page is reproducible)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: folder does not exist (expected result CSVs, PNGs and settings JSON)")
    report = Report(root)
    times: list[float] = []
    for path in sorted(root.rglob("*.json")):
        category = _category(path)
        if category is None and path.stat().st_size > MAX_JSON_BYTES:
            continue
        data = _read_json(path)
        if category is None and isinstance(data, dict) and "training_file" in data:
            category = "training configs and results"
        if category:
            report.records.setdefault(category, {})[report.relative(path)] = data
            times.append(path.stat().st_mtime)
    evaluated: dict[Path, pd.DataFrame] = {}
    for path in sorted(root.rglob("*.csv")):
        if path.name.endswith(".answers.csv"):
            continue  # answers still waiting for their judge
        df = read_table(path)
        times.append(path.stat().st_mtime)
        if {"question", "answer"} <= set(df.columns):
            report.evaluations[report.relative(path)] = df
            evaluated[path] = df
        else:
            report.tables[report.relative(path)] = df
    report.sweeps = _sweeps(evaluated, root)
    for path in sorted(root.rglob("*.png")):
        report.figures[report.relative(path)] = path.read_bytes()
        times.append(path.stat().st_mtime)
    report.written = (min(times), max(times)) if times else None
    return report
