"""The names a notebook needs are importable from `persona`, and the docs' Python example runs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import persona

PYTHON_API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def test_every_exported_name_resolves_and_all_lists_them():
    assert sorted(persona.__all__) == sorted(persona._EXPORTS)
    for name in persona.__all__:
        assert getattr(persona, name) is not None, name
    assert {
        "load_model",
        "LoadedModel",
        "load_trait",
        "PersonaVector",
        "Steer",
        "steering",
        "capture",
        "make_judge",
        "score_all",
    } <= set(persona.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        persona.nope  # noqa: B018


def test_import_persona_is_cheap():
    """CLIs import persona.* submodules; the package itself must not pull in torch or transformers."""
    code = "import sys, persona; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def _docs_python_example() -> str:
    section = PYTHON_API_PAGE.read_text().split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "docs/python-api.md's 'Use from Python' section has no python example"
    return "\n".join(blocks)


def test_docs_python_example_runs(tiny_llama_dir, tmp_path, monkeypatch, offline_env):
    """The docs' example, run as written, with the embedded model swapped for a tiny one."""
    code = _docs_python_example()
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme_example"}
    exec(compile(code.replace('"smollm2-135m"', repr(str(tiny_llama_dir))), str(PYTHON_API_PAGE), "exec"), namespace)
    assert not persona.is_steered(namespace["lm"].model)
