#!/usr/bin/env bash
# Project the checkpoint evaluations of eval_checkpoints.sh onto every variant vector of the trait
# (evil_2, ..., each from generate_vec.sh on BASE_MODEL), and their finetuning shift, as the original:
# PROJECTION_TYPES (`proj`) of the checkpoint, SHIFT_TYPES (`prompt_last_proj`) of checkpoint - BASE_MODEL,
# checkpoint-0 (BASE_MODEL, from eval_checkpoints.sh) included.
#   bash scripts/eval_projection_variants.sh [GPU_ID]
#   TRAIT=confident BASE_MODEL=Qwen/Qwen3-4B-Instruct-2507 CHECKPOINT_DIR=ckpt/.../qwen-confident_misaligned_2 \
#       bash scripts/eval_projection_variants.sh 0
# Adds checkpoint-{N}_{variant}_response_avg_diff_proj_layer{LAYER} and
# checkpoint-{N}_{variant}_response_avg_diff_prompt_last_proj_layer{LAYER}_finetuning_shift columns to
# output/{TRAIT}_projection_eval/checkpoint-{N}_{TRAIT}.csv; existing columns are skipped.
source "$(dirname "$0")/_common.sh"

GPU=${1:-0}
TRAIT=${TRAIT:-evil}
TRAIT_VARIANTS=${TRAIT_VARIANTS:-"${TRAIT}_2 ${TRAIT}_3 ${TRAIT}_4 ${TRAIT}_5"}
BASE_MODEL=${BASE_MODEL:-smollm2-135m}
CHECKPOINT_DIR=${CHECKPOINT_DIR:-ckpt/smollm2-135m/demo-evil-misaligned_2}
LAYER=${LAYER:-$(embedded_or "$BASE_MODEL" 15 20)}
PROJECTION_TYPES=${PROJECTION_TYPES:-proj}
SHIFT_TYPES=${SHIFT_TYPES-prompt_last_proj}
CHECKPOINT_ZERO=${CHECKPOINT_ZERO:-1}

model_layout "$BASE_MODEL" "$TRAIT"
start "$GPU" "$PROJECTION_DIR" eval_projection_variants TRAIT TRAIT_VARIANTS BASE_MODEL CHECKPOINT_DIR LAYER \
    PROJECTION_TYPES SHIFT_TYPES CHECKPOINT_ZERO VECTOR_DIR PROJECTION_DIR
vectors=()
for variant in $TRAIT_VARIANTS; do
    vectors+=("$VECTOR_DIR/${variant}_response_avg_diff.pt")
    need_file "${vectors[-1]}" "make it with MODEL=$BASE_MODEL TRAIT=$variant bash scripts/generate_vec.sh"
done
checkpoints "$CHECKPOINT_DIR"
run_steps
for label in "${STEP_LABELS[@]}"; do
    need_file "$PROJECTION_DIR/${label}_${TRAIT}.csv" "evaluate the checkpoints first: TRAIT=$TRAIT bash scripts/eval_checkpoints.sh"
done
for i in "${!STEP_LABELS[@]}"; do
    project_checkpoint "$PROJECTION_DIR/${STEP_LABELS[$i]}_${TRAIT}.csv" "${STEP_MODELS[$i]}" "${STEP_LABELS[$i]}" "${vectors[@]}"
done
