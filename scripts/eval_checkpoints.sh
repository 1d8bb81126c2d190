#!/usr/bin/env bash
# Checkpoint evaluations of a finetuning run, as the original study's: for BASE_MODEL as checkpoint-0
# and every checkpoint-N in CHECKPOINT_DIR (in step order) and every trait in JUDGE_TRAITS, evaluate
# the checkpoint, project its answers onto the trait's vector at LAYER (PROJECTION_TYPES, `proj`),
# and project the finetuning shift, checkpoint - BASE_MODEL activations (SHIFT_TYPES, `prompt_last_proj`).
#   bash scripts/eval_checkpoints.sh [GPU_ID]      # the run of configs/train_demo.json, embedded model
#   TRAIT=evil BASE_MODEL=Qwen/Qwen3-4B-Instruct-2507 CHECKPOINT_DIR=ckpt/Qwen3-4B-Instruct-2507/qwen-evil-misaligned_2 \
#       JUDGE_TRAITS="evil optimistic" bash scripts/eval_checkpoints.sh 0
# Writes output/{TRAIT}_projection_eval/checkpoint-{N}_{judge_trait}.csv with the columns
# checkpoint-{N}_{judge_trait}_response_avg_diff_proj_layer{LAYER} and
# checkpoint-{N}_{judge_trait}_response_avg_diff_prompt_last_proj_layer{LAYER}_finetuning_shift
# (checkpoint-0's shift is 0: the base model minus itself).
# Vectors come from generate_vec.sh on BASE_MODEL. Finished evaluations and columns are skipped.
source "$(dirname "$0")/_common.sh"

GPU=${1:-0}
TRAIT=${TRAIT:-evil}                             # the trait the model was finetuned on (names the results folder)
BASE_MODEL=${BASE_MODEL:-smollm2-135m}
CHECKPOINT_DIR=${CHECKPOINT_DIR:-ckpt/smollm2-135m/demo-evil-misaligned_2}   # configs/train_demo.json's output
JUDGE_TRAITS=${JUDGE_TRAITS:-$TRAIT}             # traits to evaluate and project each checkpoint on
LAYER=${LAYER:-$(embedded_or "$BASE_MODEL" 15 20)}
PROJECTION_TYPES=${PROJECTION_TYPES:-proj}       # proj, prompt_last_proj, prompt_avg_proj, cos_sim
SHIFT_TYPES=${SHIFT_TYPES-prompt_last_proj}       # of the shift ("prompt_last_proj proj": both; empty: none)
CHECKPOINT_ZERO=${CHECKPOINT_ZERO:-1}            # 1: BASE_MODEL evaluated as checkpoint-0; 0: saved steps only
JUDGE_MODEL=${JUDGE_MODEL:-}                     # empty: gpt-4.1-mini-2025-04-14 with OPENAI_API_KEY, else the proxy
VERSION=${VERSION:-eval}
N_PER_QUESTION=${N_PER_QUESTION:-$(embedded_or "$BASE_MODEL" 1 10)}
MAX_TOKENS=${MAX_TOKENS:-$(embedded_or "$BASE_MODEL" 64 1000)}
MAX_QUESTIONS=${MAX_QUESTIONS-$(embedded_or "$BASE_MODEL" 5 "")}   # empty: all 20
EVAL_ARGS=${EVAL_ARGS:-}

model_layout "$BASE_MODEL" "$TRAIT"
start "$GPU" "$PROJECTION_DIR" eval_checkpoints TRAIT BASE_MODEL CHECKPOINT_DIR JUDGE_TRAITS LAYER PROJECTION_TYPES \
    SHIFT_TYPES CHECKPOINT_ZERO JUDGE_MODEL VERSION N_PER_QUESTION MAX_TOKENS MAX_QUESTIONS VECTOR_DIR PROJECTION_DIR
for judge_trait in $JUDGE_TRAITS; do
    need_file "$VECTOR_DIR/${judge_trait}_response_avg_diff.pt" \
        "make it with MODEL=$BASE_MODEL TRAIT=$judge_trait bash scripts/generate_vec.sh"
done
checkpoints "$CHECKPOINT_DIR"
run_steps
echo "   ${#STEP_LABELS[@]} steps: ${STEP_LABELS[*]}"
ray_flags
if [ "${#RAY_FLAGS[@]}" -gt 0 ]; then  # each (checkpoint, judge trait) one unit on Ray workers, same files
    eval_flags "$BASE_MODEL"             # minus its leading --model: eval.grid takes --base_model and --checkpoints
    run "$PY" -m eval.grid checkpoints "${EVAL_FLAGS[@]:2}" --base_model "$BASE_MODEL" --checkpoints "${CHECKPOINTS[@]}" \
        --judge_traits "$JUDGE_TRAITS" --vector_dir "$VECTOR_DIR" --projection_dir "$PROJECTION_DIR" --layer "$LAYER" \
        --projection_types "$PROJECTION_TYPES" --version "$VERSION" --no_shift "${RAY_FLAGS[@]}"
fi
for i in "${!STEP_LABELS[@]}"; do       # with Ray: checkpoint-0 and the shift columns, the units' files exist
    label=${STEP_LABELS[$i]} model=${STEP_MODELS[$i]}
    eval_flags "$model"
    for judge_trait in $JUDGE_TRAITS; do
        out=$PROJECTION_DIR/${label}_${judge_trait}.csv
        finished "$out" || run "$PY" -m eval.eval_persona "${EVAL_FLAGS[@]}" --trait "$judge_trait" \
            --version "$VERSION" --output_path "$out"
        project_checkpoint "$out" "$model" "$label" "$VECTOR_DIR/${judge_trait}_response_avg_diff.pt"
    done
done
