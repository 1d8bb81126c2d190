#!/usr/bin/env bash
# One steered evaluation: add COEF * v[LAYER] (the trait's response_avg vector from
# generate_vec.sh) to the residual stream while answering the held-out questions.
#   bash scripts/eval_steering.sh [GPU_ID]
#   MODEL=Qwen/Qwen3-4B-Instruct-2507 TRAIT=critical LAYER=20 COEF=2.0 bash scripts/eval_steering.sh 0
# Writes output/eval_persona_eval/<model>/{trait}_steer_{type}_layer_{L}_coef_{c}.csv, the file a
# sweep cell of the same settings writes (and skips on a rerun).
source "$(dirname "$0")/_common.sh"

GPU=${1:-0}
MODEL=${MODEL:-smollm2-135m}
TRAIT=${TRAIT:-evil}
LAYER=${LAYER:-$(embedded_or "$MODEL" 15 20)}    # hidden_states[LAYER]: the output of decoder block LAYER
COEF=${COEF:-$(embedded_or "$MODEL" 6.0 2.0)}
STEERING_TYPE=${STEERING_TYPE:-response}         # response, prompt or all
JUDGE_MODEL=${JUDGE_MODEL:-}                     # empty: gpt-4.1-mini-2025-04-14 with OPENAI_API_KEY, else the proxy
VERSION=${VERSION:-eval}
N_PER_QUESTION=${N_PER_QUESTION:-$(embedded_or "$MODEL" 1 10)}
MAX_TOKENS=${MAX_TOKENS:-$(embedded_or "$MODEL" 64 1000)}
MAX_QUESTIONS=${MAX_QUESTIONS-$(embedded_or "$MODEL" 5 "")}   # empty: all 20
EVAL_ARGS=${EVAL_ARGS:-}

model_layout "$MODEL"
VECTOR_PATH=${VECTOR_PATH:-$VECTOR_DIR/${TRAIT}_response_avg_diff.pt}
start "$GPU" "$EVAL_DIR" eval_steering MODEL TRAIT LAYER COEF STEERING_TYPE JUDGE_MODEL VERSION N_PER_QUESTION \
    MAX_TOKENS MAX_QUESTIONS VECTOR_PATH EVAL_DIR
need_file "$VECTOR_PATH" "make it with MODEL=$MODEL TRAIT=$TRAIT bash scripts/generate_vec.sh"
eval_flags "$MODEL"
run "$PY" -m eval.eval_persona "${EVAL_FLAGS[@]}" --trait "$TRAIT" --version "$VERSION" --output_dir "$EVAL_DIR" \
    --vector_path "$VECTOR_PATH" --layer "$LAYER" --coef "$COEF" --steering_type "$STEERING_TYPE" --sweep
