"""`python -m persona.traits`: validate a trait library or show one artifact (the CLI lives in `persona.cli`)."""

from persona.cli import run_cli, traits_main

run_cli(traits_main)
