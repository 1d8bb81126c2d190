#!/usr/bin/env bash
# Smallest working slice until the end-to-end demo lands: load the embedded model and answer.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python - <<'PY'
from persona.models import load_model

lm = load_model()
tok = lm.tokenizer
msgs = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Give me one tip for staying focused."}]
enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = lm.model.generate(**enc, max_new_tokens=40, do_sample=False, pad_token_id=tok.pad_token_id)
print(f"{lm.name}: {lm.num_layers} layers, hidden {lm.hidden_size}")
print(tok.decode(out[0, enc['input_ids'].shape[1]:], skip_special_tokens=True))
PY
