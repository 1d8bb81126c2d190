#!/usr/bin/env bash
# Baseline evaluation: answers to a trait's held-out questions, no persona prompt, no steering,
# judged for the trait and coherence.
#   bash scripts/eval_persona.sh [GPU_ID]
#   MODEL=Qwen/Qwen3-4B-Instruct-2507 TRAIT=critical bash scripts/eval_persona.sh 0
# Writes output/eval_persona_eval/<model>/{trait}_baseline.csv (+ .judge.json). Settings below
# come from the environment when set; a finished file is skipped on a rerun.
source "$(dirname "$0")/_common.sh"

GPU=${1:-0}
MODEL=${MODEL:-smollm2-135m}
TRAITS=${TRAITS:-${TRAIT:-evil}}                 # one trait, or several
JUDGE_MODEL=${JUDGE_MODEL:-}                     # empty: gpt-4.1-mini-2025-04-14 with OPENAI_API_KEY, else the proxy
VERSION=${VERSION:-eval}                         # question set: eval (held out) or extract
N_PER_QUESTION=${N_PER_QUESTION:-$(embedded_or "$MODEL" 1 10)}
MAX_TOKENS=${MAX_TOKENS:-$(embedded_or "$MODEL" 64 1000)}
MAX_QUESTIONS=${MAX_QUESTIONS-$(embedded_or "$MODEL" 5 "")}   # empty: all 20
EVAL_ARGS=${EVAL_ARGS:-}                         # more eval_persona flags

model_layout "$MODEL"
start "$GPU" "$EVAL_DIR" eval_persona MODEL TRAITS JUDGE_MODEL VERSION N_PER_QUESTION MAX_TOKENS MAX_QUESTIONS EVAL_DIR
eval_flags "$MODEL"
for TRAIT in $TRAITS; do
    out=$EVAL_DIR/${TRAIT}_baseline.csv
    finished "$out" || run "$PY" -m eval.eval_persona "${EVAL_FLAGS[@]}" --trait "$TRAIT" --version "$VERSION" \
        --output_path "$out"
done
