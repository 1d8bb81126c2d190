#!/usr/bin/env bash
# The smallest end-to-end slice on CPU with the embedded model (a few minutes on 2 cores):
#   1. evaluate `evil` under its pos and neg persona prompts (extract questions),
#   2. extract persona vectors from the pair,
#   3. steer the unprompted model with the vector and compare the trait score.
# Scores come from the offline likelihood proxy judge unless OPENAI_API_KEY is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
trait=${TRAIT:-evil}
layer=${LAYER:-15}
coef=${COEF:-6.0}
out=output/demo
common=(--trait "$trait" --n_per_question 1 --max_tokens 40 --batch_size 50)

for kind in pos neg; do
    "$PY" -m eval.eval_persona "${common[@]}" --version extract --max_questions 8 \
        --persona_instruction_type "$kind" --output_path "$out/${trait}_${kind}.csv"
done
"$PY" generate_vec.py --trait "$trait" --pos_path "$out/${trait}_pos.csv" --neg_path "$out/${trait}_neg.csv" \
    --save_dir "$out/vectors" --threshold "${THRESHOLD:-50}"
"$PY" -m eval.eval_persona "${common[@]}" --max_questions 10 --output_path "$out/${trait}_unsteered.csv"
"$PY" -m eval.eval_persona "${common[@]}" --max_questions 10 --output_path "$out/${trait}_steered.csv" \
    --vector_path "$out/vectors/${trait}_response_avg_diff.pt" --layer "$layer" --coef "$coef"

"$PY" - "$out" "$trait" <<'PY'
import sys
import pandas as pd
out, trait = sys.argv[1], sys.argv[2]
print(f"\n=== demo summary ({trait}, embedded SmolLM2-135M) ===")
for name in ("pos", "neg", "unsteered", "steered"):
    df = pd.read_csv(f"{out}/{trait}_{name}.csv")
    print(f"{name:>10}: {trait} {df[trait].mean():5.1f}   coherence {df['coherence'].mean():5.1f}   (n={len(df)})")
steered = pd.read_csv(f"{out}/{trait}_steered.csv")
print("\nexample steered answer:\n  Q:", steered.question[0], "\n  A:", str(steered.answer[0])[:300])
print(f"\nfiles in {out}/ ; vectors in {out}/vectors/")
PY
