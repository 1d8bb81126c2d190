#!/usr/bin/env bash
# `make demo` (or `make demo MODEL=<hub id> JUDGE=<judge>`): a small persona study end to end.
# The stages and every setting live in study/demo/settings.py (DemoSettings); override any of them with
# DEMO_<NAME>=... in the environment (`.venv/bin/python scripts/demo.py --help` lists them).
# Scores come from the offline likelihood proxy judge unless a judge is configured.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
exec "${PY:-.venv/bin/python}" scripts/demo.py "$@"
