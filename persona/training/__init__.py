"""Finetuning: config schema, chat data with assistant-only labels, training-time hooks, SFT runs.

`python training.py configs/X.json` is the entry point and `persona.training.trainer.train`
does the work; `finetune_data` builds trait-eliciting datasets. The package itself imports
nothing heavy, so `backend` can bring in Unsloth before transformers and TRL load.
"""
