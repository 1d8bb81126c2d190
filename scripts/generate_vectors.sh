#!/usr/bin/env bash
# Persona vectors for one trait: pos and neg persona evaluations on the extract questions,
# then generate_vec.py on the pair (vectors land where eval_steering_sweep.sh looks).
# Usage: scripts/generate_vectors.sh GPU_ID [TRAIT] [MODEL] [THRESHOLD]
#   scripts/generate_vectors.sh 0 evil Qwen/Qwen3-4B-Instruct-2507
# Extra eval_persona flags (e.g. the judge) go in EVAL_ARGS; N_PER_QUESTION, MAX_TOKENS override.
set -euo pipefail
cd "$(dirname "$0")/.."
gpu=${1:?usage: $0 GPU_ID [TRAIT] [MODEL] [THRESHOLD]}
trait=${2:-evil}
model=${3:-smollm2-135m}
threshold=${4:-50}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
export CUDA_VISIBLE_DEVICES=$gpu
name=$(basename "$model")
evals=output/eval_persona_extract/$name
for kind in pos neg; do
    # shellcheck disable=SC2086  # EVAL_ARGS is a list of flags
    "$PY" -m eval.eval_persona --model "$model" --trait "$trait" --version extract \
        --persona_instruction_type "$kind" --output_path "$evals/${trait}_${kind}_instruct.csv" \
        --n_per_question "${N_PER_QUESTION:-10}" --max_tokens "${MAX_TOKENS:-1000}" ${EVAL_ARGS:-}
done
"$PY" generate_vec.py --model_name "$model" --trait "$trait" --threshold "$threshold" \
    --pos_path "$evals/${trait}_pos_instruct.csv" --neg_path "$evals/${trait}_neg_instruct.csv" \
    --save_dir "output/vectors/$name"
