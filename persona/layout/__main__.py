"""`python -m persona.layout`: print a model's output folders as shell assignments (the CLI lives in `persona.cli`)."""

from persona.cli import layout_main, run_cli

run_cli(layout_main)
