"""The original study's name for `plot_variant_projections.py --trait confident`.

python viz/plot_confident_projections.py [DATA_DIR]    # default DATA_DIR: output/confident_projection_eval
"""

from __future__ import annotations

from persona.cli import run_cli
from viz.plot_variant_projections import main as variant_main


def main(argv: list[str] | None = None) -> int:
    return variant_main(argv, trait_default="confident")


if __name__ == "__main__":
    run_cli(main)
