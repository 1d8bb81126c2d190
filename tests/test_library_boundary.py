"""The library/CLI boundary: `persona/` never imports the application layers, and only `persona/cli/`
parses flags or prints.

The scan reads every module's syntax tree (imports inside functions and under `TYPE_CHECKING`
count too: a dependency is a dependency), so a docstring that shows `print(...)` is no hit.
Each check first proves on a planted package that it finds what it looks for.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "persona"
APPLICATION_LAYERS = ("viz", "eval", "study", "scripts")  # the thin CLIs and the study app, above the library
CLI_PACKAGE = "cli"  # persona/cli/: argparse, flag names and printing live here


def _trees(root: Path, skip: str | None = None):
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent)
        if skip is not None and relative.parts[1] == skip:
            continue
        yield str(relative), ast.parse(path.read_text(encoding="utf-8"))


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module]
    return []


def application_imports(root: Path = PACKAGE) -> list[str]:
    """`module: imported` for every import of an application layer inside the library."""
    found = []
    for name, tree in _trees(root):
        for node in ast.walk(tree):
            found += [f"{name}: {m}" for m in _imported(node) if m.split(".")[0] in APPLICATION_LAYERS]
    return found


def cli_only_uses(root: Path = PACKAGE) -> list[str]:
    """`module:line what` for every argparse import and bare `print(` call outside `persona/cli/`."""
    found = []
    for name, tree in _trees(root, skip=CLI_PACKAGE):
        for node in ast.walk(tree):
            if any(m.split(".")[0] == "argparse" for m in _imported(node)):
                found.append(f"{name}:{node.lineno} imports argparse")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{name}:{node.lineno} calls print")
    return found


def _planted(tmp_path: Path) -> Path:
    pkg = tmp_path / "persona"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Shows print(x) in a docstring: not a call."""\n')
    (pkg / "cli" / "__init__.py").write_text("import argparse\nprint('allowed here')\n")
    (pkg / "draw.py").write_text("def f():\n    from viz.common import save_figure\n    print(save_figure)\n")
    (pkg / "flags.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import eval.judge\nfrom argparse import Namespace\n"
    )
    (pkg / "ok.py").write_text("import logging\nfrom persona import draw\nlogging.info('fine')\nx = 'print('\n")
    return pkg


def test_the_checkers_find_planted_uses(tmp_path):
    pkg = _planted(tmp_path)
    assert application_imports(pkg) == ["persona/draw.py: viz.common", "persona/flags.py: eval.judge"]
    assert cli_only_uses(pkg) == ["persona/draw.py:3 calls print", "persona/flags.py:4 imports argparse"]


def test_the_library_imports_no_application_layer():
    assert application_imports() == []


def test_only_persona_cli_parses_flags_or_prints():
    assert cli_only_uses() == []
