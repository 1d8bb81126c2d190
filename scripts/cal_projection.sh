#!/usr/bin/env bash
# Project the answers of an evaluation CSV (default: eval_persona.sh's baseline) onto a persona
# vector: one column per layer, named {model}_{vector}_{type}_layer{L}; with BASE_MODEL set, also
# the finetuning shift (MODEL - BASE_MODEL activations, suffix _finetuning_shift).
#   bash scripts/cal_projection.sh [GPU_ID]
#   MODEL=Qwen/Qwen3-4B-Instruct-2507 TRAIT=evil LAYERS="16 20" bash scripts/cal_projection.sh 0
# Columns are added to FILE_PATH in place; existing ones are skipped.
source "$(dirname "$0")/_common.sh"

GPU=${1:-0}
MODEL=${MODEL:-smollm2-135m}
TRAIT=${TRAIT:-evil}
LAYERS=${LAYERS:-$(embedded_or "$MODEL" 15 20)}
PROJECTION_TYPES=${PROJECTION_TYPES:-proj}       # proj, prompt_last_proj, prompt_avg_proj, cos_sim
BASE_MODEL=${BASE_MODEL:-}                       # set: project the finetuning shift instead

model_layout "$MODEL"
FILE_PATH=${FILE_PATH:-$EVAL_DIR/${TRAIT}_baseline.csv}
VECTOR_PATH=${VECTOR_PATH:-$VECTOR_DIR/${TRAIT}_response_avg_diff.pt}
start "$GPU" "$(dirname "$FILE_PATH")" cal_projection MODEL TRAIT LAYERS PROJECTION_TYPES BASE_MODEL FILE_PATH VECTOR_PATH
need_file "$FILE_PATH" "make it with MODEL=$MODEL TRAIT=$TRAIT bash scripts/eval_persona.sh"
need_file "$VECTOR_PATH" "make it with MODEL=$MODEL TRAIT=$TRAIT bash scripts/generate_vec.sh"
run "$PY" -m eval.cal_projection --file_path "$FILE_PATH" --vector_path_list "$VECTOR_PATH" --layer_list "$LAYERS" \
    --projection_type "$PROJECTION_TYPES" --model_name "$MODEL" ${BASE_MODEL:+--base_model "$BASE_MODEL"}
