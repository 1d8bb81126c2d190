# Shared by the pipelines in scripts/ (sourced, never run): the repo root as working directory,
# $PY, the output layout of a model (defined once, in persona/layout/), laptop-sized defaults
# for the embedded model, the GPU argument, a log under the results folder, one-line errors for
# missing inputs, and skipping of finished outputs so a rerun resumes.
# shellcheck shell=bash
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUTPUT_ROOT=${OUTPUT_ROOT:-output}
EMBEDDED_MODEL=smollm2-135m

# die MESSAGE...: one line on stderr, exit 2 (as the Python CLIs do for bad input).
die() {
    echo "error: $*" >&2
    exit 2
}

# need_file PATH HOW_TO_MAKE_IT: stop with a one-line error naming a missing input.
need_file() {
    [ -f "$1" ] || die "$1 does not exist ($2)"
}

# embedded_or MODEL VALUE_FOR_THE_EMBEDDED_MODEL VALUE_OTHERWISE: laptop-sized defaults on the
# embedded model, the original study's settings on any other.
embedded_or() {
    if [ "$1" = "$EMBEDDED_MODEL" ]; then echo "$2"; else echo "$3"; fi
}

# model_layout MODEL [TRAIT]: sets MODEL_NAME, EXTRACT_DIR, VECTOR_DIR, EVAL_DIR (and PROJECTION_DIR).
model_layout() {
    local assignments
    assignments=$("$PY" -m persona.layout --root "$OUTPUT_ROOT" "$1" ${2:+--trait "$2"}) || exit 2
    eval "$assignments"
}

# start GPU_ID RESULTS_DIR NAME VAR...: use the GPU, log everything to RESULTS_DIR/NAME_<time>.log
# (stdout and stderr stay apart on the terminal), and print the settings VAR... at the top.
start() {
    export CUDA_VISIBLE_DEVICES=$1
    mkdir -p "$2"
    LOG_FILE="$2/$3_$(date +%Y%m%d_%H%M%S).log"
    exec > >(tee -a "$LOG_FILE") 2> >(tee -a "$LOG_FILE" >&2)
    echo "== $3 ($(date -u +%Y-%m-%dT%H:%M:%SZ)); log: $LOG_FILE"
    local var
    for var in "${@:4}"; do
        echo "   $var=${!var}"
    done
}

# finished FILE...: true (with a note) when every FILE exists, so the step is skipped.
finished() {
    local file
    for file in "$@"; do
        [ -f "$file" ] || return 1
    done
    echo "-- $1 exists, skipping"
}

# run CMD...: echo, run and time one step.
run() {
    echo "++ $*"
    local t0=$SECONDS
    "$@"
    echo "   done in $((SECONDS - t0)) s"
}

# eval_flags MODEL: EVAL_FLAGS, the model, sampling and judge flags every eval_persona call shares.
eval_flags() {
    EVAL_FLAGS=(--model "$1" --n_per_question "$N_PER_QUESTION" --max_tokens "$MAX_TOKENS")
    if [ -n "${MAX_QUESTIONS:-}" ]; then EVAL_FLAGS+=(--max_questions "$MAX_QUESTIONS"); fi
    if [ -n "${JUDGE_MODEL:-}" ]; then EVAL_FLAGS+=(--judge_model "$JUDGE_MODEL"); fi
    local extra
    read -ra extra <<< "${EVAL_ARGS:-}"
    EVAL_FLAGS+=("${extra[@]}")
}

# checkpoints DIR: the checkpoint-N folders of a training run, in step order (CHECKPOINTS array).
checkpoints() {
    [ -d "$1" ] || die "CHECKPOINT_DIR $1 does not exist (train first, e.g. python training.py configs/train_demo.json)"
    mapfile -t CHECKPOINTS < <(find "$1" -mindepth 1 -maxdepth 1 -type d -name 'checkpoint-*' | sort -V)
    [ "${#CHECKPOINTS[@]}" -gt 0 ] || die "no checkpoint-* folders in CHECKPOINT_DIR $1"
}

# project_checkpoint FILE MODEL LABEL VECTOR...: the original study's two cal_projection calls on a
# checkpoint evaluation: PROJECTION_TYPES of MODEL's activations, then SHIFT_TYPES of the finetuning
# shift (MODEL - BASE_MODEL), columns labelled LABEL (checkpoint-N; checkpoint-0 is BASE_MODEL itself).
project_checkpoint() {
    local common=(--file_path "$1" --model_name "$2" --column_prefix "$3" --vector_path_list "${@:4}" --layer_list "$LAYER")
    run "$PY" -m eval.cal_projection "${common[@]}" --projection_type "$PROJECTION_TYPES"
    if [ -n "$SHIFT_TYPES" ]; then
        run "$PY" -m eval.cal_projection "${common[@]}" --projection_type "$SHIFT_TYPES" --base_model "$BASE_MODEL"
    fi
}

# run_steps: the steps of a run in order, STEP_LABELS (checkpoint-N) and STEP_MODELS: checkpoint-0 =
# BASE_MODEL when CHECKPOINT_ZERO=1 (timelines start at the base model, as the original's figures
# expect), then every checkpoint-N of CHECKPOINTS.
run_steps() {
    STEP_LABELS=() STEP_MODELS=()
    if [ "${CHECKPOINT_ZERO:-1}" = 1 ]; then STEP_LABELS+=(checkpoint-0) STEP_MODELS+=("$BASE_MODEL"); fi
    local checkpoint
    for checkpoint in "${CHECKPOINTS[@]}"; do STEP_LABELS+=("$(basename "$checkpoint")") STEP_MODELS+=("$checkpoint"); done
}

# ray_flags: RAY_FLAGS=(--ray) when RAY_ADDRESS is set or USE_RAY=1, so the pipeline's units run on
# Ray workers, one per GPU (README, 'Several GPUs and nodes'); an empty array otherwise.
ray_flags() {
    RAY_FLAGS=()
    if [ -n "${RAY_ADDRESS:-}" ] || [ "${USE_RAY:-0}" != 0 ]; then RAY_FLAGS=(--ray); fi
}
