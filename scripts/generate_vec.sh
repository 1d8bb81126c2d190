#!/usr/bin/env bash
# Persona vectors: pos and neg persona evaluations on a trait's extract questions, then
# generate_vec.py on the pair.
#   bash scripts/generate_vec.sh [GPU_ID]          # embedded model, evil, laptop-sized (minutes on a CPU)
#   MODEL=Qwen/Qwen3-4B-Instruct-2507 TRAIT=critical NEG_ASSISTANT=agreeable bash scripts/generate_vec.sh 0
# Writes output/eval_persona_extract/<model>/{trait}_{pos,neg}_instruct.csv and
# output/persona_vectors/<model>/{trait}_{prompt_avg,response_avg,prompt_last}_diff.pt + {trait}_vectors.json.
# Every setting below can be given in the environment; finished files are skipped on a rerun.
source "$(dirname "$0")/_common.sh"

GPU=${1:-0}
MODEL=${MODEL:-smollm2-135m}
TRAITS=${TRAITS:-${TRAIT:-evil}}                 # one trait, or several ("evil optimistic")
POS_ASSISTANT=${POS_ASSISTANT:-}                 # "You are a/an <name> assistant." under pos prompts (default: the trait)
NEG_ASSISTANT=${NEG_ASSISTANT:-helpful}          # ... under neg prompts
JUDGE_MODEL=${JUDGE_MODEL:-}                     # empty: gpt-4.1-mini-2025-04-14 with OPENAI_API_KEY, else the proxy
THRESHOLD=${THRESHOLD:-50}                       # keep pairs with pos score >= T, neg < 100-T (both coherent)
N_PER_QUESTION=${N_PER_QUESTION:-$(embedded_or "$MODEL" 1 10)}
MAX_TOKENS=${MAX_TOKENS:-$(embedded_or "$MODEL" 64 1000)}
MAX_QUESTIONS=${MAX_QUESTIONS-$(embedded_or "$MODEL" 5 "")}   # empty: all 20
EVAL_ARGS=${EVAL_ARGS:-}                         # more eval_persona flags, e.g. "--batch_size 64"

model_layout "$MODEL"
start "$GPU" "$VECTOR_DIR" generate_vec MODEL TRAITS POS_ASSISTANT NEG_ASSISTANT JUDGE_MODEL THRESHOLD \
    N_PER_QUESTION MAX_TOKENS MAX_QUESTIONS EXTRACT_DIR VECTOR_DIR
eval_flags "$MODEL"
ray_flags
if [ "${#RAY_FLAGS[@]}" -gt 0 ]; then  # each trait one unit on Ray workers, same files (README: Several GPUs and nodes)
    run "$PY" -m eval.grid vectors "${EVAL_FLAGS[@]}" --traits "$TRAITS" --extract_dir "$EXTRACT_DIR" \
        --vector_dir "$VECTOR_DIR" --threshold "$THRESHOLD" --neg_assistant "$NEG_ASSISTANT" \
        ${POS_ASSISTANT:+--pos_assistant "$POS_ASSISTANT"} "${RAY_FLAGS[@]}"
    exit 0
fi
for TRAIT in $TRAITS; do
    for kind in pos neg; do
        out=$EXTRACT_DIR/${TRAIT}_${kind}_instruct.csv
        name=$([ "$kind" = pos ] && echo "$POS_ASSISTANT" || echo "$NEG_ASSISTANT")
        finished "$out" || run "$PY" -m eval.eval_persona "${EVAL_FLAGS[@]}" --trait "$TRAIT" --version extract \
            --persona_instruction_type "$kind" ${name:+--assistant_name "$name"} --output_path "$out"
    done
    finished "$VECTOR_DIR/${TRAIT}"_{prompt_avg,response_avg,prompt_last}_diff.pt "$VECTOR_DIR/${TRAIT}_vectors.json" \
        || run "$PY" generate_vec.py --model_name "$MODEL" --trait "$TRAIT" --threshold "$THRESHOLD" \
            --pos_path "$EXTRACT_DIR/${TRAIT}_pos_instruct.csv" --neg_path "$EXTRACT_DIR/${TRAIT}_neg_instruct.csv" \
            --save_dir "$VECTOR_DIR"
done
