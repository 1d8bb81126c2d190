#!/usr/bin/env bash
# Project the checkpoint evaluations of eval_checkpoints.sh onto every variant vector of the trait
# (evil_2, ..., each from generate_vec.sh on BASE_MODEL), and their finetuning shift.
#   bash scripts/eval_projection_variants.sh [GPU_ID]
#   TRAIT=confident BASE_MODEL=Qwen/Qwen3-4B-Instruct-2507 CHECKPOINT_DIR=ckpt/.../qwen-confident_misaligned_2 \
#       bash scripts/eval_projection_variants.sh 0
# Adds checkpoint-{N}_{variant}_response_avg_diff_{type}_layer{LAYER}[_finetuning_shift] columns to
# output/{TRAIT}_projection_eval/checkpoint-{N}_{TRAIT}.csv; existing columns are skipped.
source "$(dirname "$0")/_common.sh"

GPU=${1:-0}
TRAIT=${TRAIT:-evil}
TRAIT_VARIANTS=${TRAIT_VARIANTS:-"${TRAIT}_2 ${TRAIT}_3 ${TRAIT}_4 ${TRAIT}_5"}
BASE_MODEL=${BASE_MODEL:-smollm2-135m}
CHECKPOINT_DIR=${CHECKPOINT_DIR:-ckpt/smollm2-135m/demo-evil-misaligned_2}
LAYER=${LAYER:-$(embedded_or "$BASE_MODEL" 15 20)}
PROJECTION_TYPES=${PROJECTION_TYPES:-proj}

model_layout "$BASE_MODEL" "$TRAIT"
start "$GPU" "$PROJECTION_DIR" eval_projection_variants TRAIT TRAIT_VARIANTS BASE_MODEL CHECKPOINT_DIR LAYER \
    PROJECTION_TYPES VECTOR_DIR PROJECTION_DIR
vectors=()
for variant in $TRAIT_VARIANTS; do
    vectors+=("$VECTOR_DIR/${variant}_response_avg_diff.pt")
    need_file "${vectors[-1]}" "make it with MODEL=$BASE_MODEL TRAIT=$variant bash scripts/generate_vec.sh"
done
checkpoints "$CHECKPOINT_DIR"
for checkpoint in "${CHECKPOINTS[@]}"; do
    file=$PROJECTION_DIR/$(basename "$checkpoint")_${TRAIT}.csv
    need_file "$file" "evaluate the checkpoints first: TRAIT=$TRAIT bash scripts/eval_checkpoints.sh"
done
for checkpoint in "${CHECKPOINTS[@]}"; do
    projection=(--file_path "$PROJECTION_DIR/$(basename "$checkpoint")_${TRAIT}.csv" --vector_path_list "${vectors[@]}"
                --layer_list "$LAYER" --projection_type "$PROJECTION_TYPES" --model_name "$checkpoint")
    run "$PY" -m eval.cal_projection "${projection[@]}"
    run "$PY" -m eval.cal_projection "${projection[@]}" --base_model "$BASE_MODEL"
done
