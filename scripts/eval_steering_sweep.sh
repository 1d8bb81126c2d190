#!/usr/bin/env bash
# Steering sweep over layers x coefficients in one process (one CSV per cell).
# Usage: scripts/eval_steering_sweep.sh GPU_ID [TRAIT] [MODEL] [VECTOR] [LAYERS] [COEFS] [TYPE]
#   scripts/eval_steering_sweep.sh 0 evil Qwen/Qwen3-4B-Instruct-2507 \
#       persona_vectors/Qwen3-4B-Instruct-2507/evil_response_avg_diff.pt "12 16 20 24" "0.5 1.0 1.5 2.0"
set -euo pipefail
cd "$(dirname "$0")/.."
gpu=${1:?usage: $0 GPU_ID [TRAIT] [MODEL] [VECTOR] [LAYERS] [COEFS] [TYPE]}
trait=${2:-evil}
model=${3:-smollm2-135m}
vector=${4:-output/vectors/$(basename "$model")/${trait}_response_avg_diff.pt}
layers=${5:-"8 12 16 20"}
coefs=${6:-"0.5 1.0 1.5 2.0"}
steering_type=${7:-response}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
export CUDA_VISIBLE_DEVICES=$gpu
"$PY" -m eval.eval_persona \
    --model "$model" --trait "$trait" --version eval \
    --vector_path "$vector" --layer $layers --coef $coefs --steering_type "$steering_type" \
    --output_dir "output/eval_steering/$(basename "$model")/$trait" \
    --n_per_question "${N_PER_QUESTION:-10}" --max_tokens "${MAX_TOKENS:-1000}" --sweep
