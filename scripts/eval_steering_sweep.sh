#!/usr/bin/env bash
# Steering sweep: every (layer, coefficient) cell for each trait, one in-process eval_persona call
# per trait (one model load; rows of all cells share generation batches).
#   bash scripts/eval_steering_sweep.sh [GPU_ID]    # embedded model: a small grid
#   MODEL=Qwen/Qwen3-4B-Instruct-2507 TRAITS="confident evil" bash scripts/eval_steering_sweep.sh 0
#     -> the original grid: layers 0..L (L = the model's decoder layers), coefficients 0.5..2.5
# Writes output/eval_persona_eval/<model>/{trait}_steer_{type}_layer_{L}_coef_{c}.csv per cell;
# finished cells are skipped on a rerun.
source "$(dirname "$0")/_common.sh"

GPU=${1:-0}
MODEL=${MODEL:-smollm2-135m}
TRAITS=${TRAITS:-${TRAIT:-evil}}
LAYERS=${LAYERS:-$(embedded_or "$MODEL" "10 15 20" "")}      # empty: 0..L, read from the model's config
COEFS=${COEFS:-$(embedded_or "$MODEL" "2.0 4.0 6.0" "0.5 1.0 1.5 2.0 2.5")}
STEERING_TYPE=${STEERING_TYPE:-response}         # response, prompt or all
JUDGE_MODEL=${JUDGE_MODEL:-}                     # empty: gpt-4.1-mini-2025-04-14 with OPENAI_API_KEY, else the proxy
VERSION=${VERSION:-eval}
N_PER_QUESTION=${N_PER_QUESTION:-$(embedded_or "$MODEL" 1 10)}
MAX_TOKENS=${MAX_TOKENS:-$(embedded_or "$MODEL" 64 1000)}
MAX_QUESTIONS=${MAX_QUESTIONS-$(embedded_or "$MODEL" 5 "")}   # empty: all 20
EVAL_ARGS=${EVAL_ARGS:-}

if [ -z "$LAYERS" ]; then
    L=$("$PY" -m persona.layout --num_layers "$MODEL") || die "cannot read the layer count of $MODEL; set LAYERS"
    LAYERS=$(seq -s " " 0 "$L")
fi
model_layout "$MODEL"
start "$GPU" "$EVAL_DIR" eval_steering_sweep MODEL TRAITS LAYERS COEFS STEERING_TYPE JUDGE_MODEL VERSION \
    N_PER_QUESTION MAX_TOKENS MAX_QUESTIONS EVAL_DIR
for TRAIT in $TRAITS; do
    need_file "$VECTOR_DIR/${TRAIT}_response_avg_diff.pt" "make it with MODEL=$MODEL TRAIT=$TRAIT bash scripts/generate_vec.sh"
done
eval_flags "$MODEL"
ray_flags  # RAY_ADDRESS or USE_RAY=1: the cells run on Ray workers
for TRAIT in $TRAITS; do
    run "$PY" -m eval.eval_persona "${EVAL_FLAGS[@]}" --trait "$TRAIT" --version "$VERSION" --output_dir "$EVAL_DIR" \
        --vector_path "$VECTOR_DIR/${TRAIT}_response_avg_diff.pt" --layer "$LAYERS" --coef "$COEFS" \
        --steering_type "$STEERING_TYPE" --sweep "${RAY_FLAGS[@]}"
done
