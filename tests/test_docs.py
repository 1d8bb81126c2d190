"""The README stays a front page whose links resolve, and the docs site builds strictly (no broken
page, link or anchor; every page in the nav)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAX_README_LINES = 220
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # inline Markdown links: [text](target)


def relative_links(markdown: str) -> list[str]:
    """Targets of inline links that point into the repository (no scheme, not a bare #anchor)."""
    without_code = re.sub(r"```.*?```", "", markdown, flags=re.S)
    targets = LINK.findall(without_code)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_relative_links_skips_urls_anchors_and_code():
    text = "[a](docs/x.md#y) [b](https://e.org) [c](#here) [d](mailto:x@y)\n```\n[e](no.md)\n```\n"
    assert relative_links(text) == ["docs/x.md#y"]


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move reference text to docs/"


def test_every_relative_link_in_the_readme_points_to_an_existing_file():
    links = relative_links(README.read_text())
    assert links, "README.md links into docs/"
    missing = [link for link in links if not (REPO / link.split("#", 1)[0]).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


CLI_SOURCES = ["*.py", "eval/*.py", "viz/*.py", "data_generation/*.py", "scripts/*.py", "persona/**/*.py"]
ADD_ARGUMENT = re.compile(r"""add_argument\(\s*((?:["']-{1,2}[\w-]+["']\s*,\s*)+)""")  # its option strings


def cli_flags() -> dict[str, list[str]]:
    """Every option of every command-line tool, read from the source: `file:line` -> its option strings."""
    found = {}
    for pattern in CLI_SOURCES:
        for path in sorted(REPO.glob(pattern)):
            text = path.read_text()
            for match in ADD_ARGUMENT.finditer(text):
                options = re.findall(r"""["'](--[\w-]+)["']""", match.group(1))
                if options:
                    line = text.count("\n", 0, match.start()) + 1
                    found[f"{path.relative_to(REPO)}:{line}"] = options
    return found


def test_every_command_line_flag_is_documented():
    """A flag counts as documented when one of its spellings appears on some page in docs/."""
    docs = "\n".join(page.read_text() for page in (REPO / "docs").glob("*.md"))
    flags = cli_flags()
    assert len(flags) > 100, "the flag scan found too few add_argument calls"
    documented = set(
        re.findall(r"(?<![\w-])(--[\w-]+)", docs)
    )  # whole options only: `--layer` is not in `--layer_list`
    undocumented = {where: options for where, options in flags.items() if documented.isdisjoint(options)}
    assert not undocumented, f"flags missing from docs/: {undocumented}"


needs_mkdocs = pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed")


def build_docs(root: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` as `make docs` runs it. Never with `--quiet`: it silences the warnings
    before strict mode counts them, and a broken link then passes."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@needs_mkdocs
def test_the_docs_build_strictly(tmp_path):
    result = build_docs(REPO, tmp_path / "site")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists() and (tmp_path / "site" / "contributing" / "index.html").exists()


@needs_mkdocs
def test_the_strict_build_fails_on_a_broken_anchor_and_on_a_page_missing_from_nav(tmp_path):
    """The gate itself: the repository's mkdocs.yml turns each kind of breakage into a failed build."""
    for name, breakage in [
        ("anchor", lambda docs: (docs / "index.md").write_text("# Home\n\n[x](commands.md#no-such-anchor)\n")),
        ("nav", lambda docs: (docs / "not_in_nav.md").write_text("# Orphan\n")),
    ]:
        root = tmp_path / name
        shutil.copytree(REPO / "docs", root / "docs")
        shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
        breakage(root / "docs")
        result = build_docs(root, root / "site")
        assert result.returncode != 0, f"a broken {name} passed the strict build"
        assert "Aborted with" in result.stdout + result.stderr
