"""`python -m viz.report RESULTS_DIR`: see `viz.report`."""

from persona.cli import run_cli
from viz.report import main

run_cli(main)
