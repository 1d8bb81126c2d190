"""`make demo`: a small, honest persona study end to end (see the README section "The demo").

Stages: pos/neg persona evaluations -> vectors -> steering sweep + baseline -> projections ->
LoRA finetune with and without preventative steering -> finetuning shift -> figures,
interference table, headline, HTML report. Everything goes under DEMO_OUT (output/demo);
finished stages are skipped, so an interrupted run continues where it stopped.

Settings (study.demo.DemoSettings) come from the environment, DEMO_<NAME>:
"""

from __future__ import annotations

import argparse
import dataclasses

from persona.cli import run_cli, setup_logging
from study.demo import DemoSettings, run_demo


def main(argv: list[str] | None = None) -> int:
    settings_help = "\n".join(
        f"  DEMO_{f.name.upper():<24} default {f.default!r}" for f in dataclasses.fields(DemoSettings)
    )
    argparse.ArgumentParser(
        description=__doc__ + settings_help, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args(argv)
    setup_logging()
    run_demo(DemoSettings.from_env())
    return 0


if __name__ == "__main__":
    run_cli(main)
