"""Finetune a chat model: `python training.py configs/<name>.json`.

LoRA SFT on chat JSONL (loss on assistant tokens), checkpoints every `save_steps` under
`output_dir/checkpoint-N`, optional preventative steering / CAFT hooks during training.
See the README section "Finetuning" for the config keys.
"""

from __future__ import annotations

import argparse

from persona.training.backend import import_unsloth_if_wanted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="JSON training config, e.g. configs/train_demo.json")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    unsloth = import_unsloth_if_wanted()  # before transformers/TRL, so its patches apply

    from persona.cli import setup_logging
    from persona.training.config import load_config

    setup_logging(args.verbose)
    cfg = load_config(args.config)  # bad config, data, model or vector: one line via run_cli
    from persona.training.trainer import train

    results = train(cfg)
    stack = "unsloth" if unsloth else "transformers+peft"
    print(
        f"trained {cfg.model} for {results['global_step']} steps ({stack}); "
        f"train loss {results['train'].get('train_loss', float('nan')):.4f}"
    )
    if "eval" in results:
        print(f"held-out loss {results['eval'].get('eval_loss', float('nan')):.4f}")
    for choice in results.get("layer_choice", []):
        print(
            f"steering layer auto -> {choice['layer']} (held-out AUROC {choice['auroc']:.3f}, {choice['quality_csv']})"
        )
    print(f"newest checkpoint: {results['checkpoint'] or '(none: save_strategy is no)'}")
    print(f"config and results: {cfg.output_dir}/training_config.json, training_results.json")
    return 0


if __name__ == "__main__":
    from persona.cli import run_cli

    run_cli(main)
