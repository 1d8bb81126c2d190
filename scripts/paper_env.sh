# The paper's setup in one step, sourced (not run) before the pipelines:
#   source scripts/paper_env.sh ~/src/persona_vectors     # your clone of the original study
#   TRAIT=evil bash scripts/generate_vec.sh 0 && TRAIT=evil bash scripts/eval_steering_sweep.sh 0 ...
# It reads the original's trait files (ORIGINAL/data_generation/trait_data_{extract,eval}, or a seed
# folder with extract/ and eval/) and its coherence prompt (ORIGINAL/eval/prompts.py, or a text file
# in PAPER_COHERENCE_PROMPT) from your copy, and sets the paper's model and judge. See docs/paper-setup.md.
# shellcheck shell=bash
paper_setup() {
    local original=${1:-}
    if [ -z "$original" ] || [ ! -d "$original" ]; then
        echo "error: give your copy of the original study: source scripts/paper_env.sh PATH/TO/persona_vectors" >&2
        return 2
    fi
    local data=$original/data_generation
    if [ ! -d "$data/trait_data_eval" ] && [ -d "$original/eval" ] && [ -d "$original/extract" ]; then
        data=$original  # a seed folder of trait files: extract/ and eval/
    fi
    if [ ! -d "$data/trait_data_eval" ] && [ ! -d "$data/eval" ]; then
        echo "error: $original has no data_generation/trait_data_eval/ (nor extract/ and eval/ folders of trait files)" >&2
        return 2
    fi
    local coherence=${PAPER_COHERENCE_PROMPT:-$original/eval/prompts.py}
    if [ ! -f "$coherence" ]; then
        echo "error: $coherence does not exist (set PAPER_COHERENCE_PROMPT to a file holding the coherence prompt)" >&2
        return 2
    fi
    export PERSONA_TRAIT_DATA=$data
    export MODEL=${PAPER_MODEL:-Qwen/Qwen3-4B-Instruct-2507}
    export BASE_MODEL=$MODEL
    export JUDGE_MODEL=gpt-4.1-mini-2025-04-14
    export EVAL_ARGS="${EVAL_ARGS:+$EVAL_ARGS }--coherence_prompt $coherence"
    [ -n "${OPENAI_API_KEY:-}" ] || echo "note: OPENAI_API_KEY is not set; the judge $JUDGE_MODEL needs it" >&2
    echo "paper setup: MODEL=$MODEL JUDGE_MODEL=$JUDGE_MODEL PERSONA_TRAIT_DATA=$PERSONA_TRAIT_DATA"
    echo "             EVAL_ARGS=$EVAL_ARGS"
}
paper_setup "$@"
