"""The demo study behind `make demo`: settings, paths, its stages (library calls) and the runner.

A small persona study on one machine: for each trait, pos/neg persona evaluations, vector
extraction, a steering sweep plus the unsteered baseline (on held-out eval questions) and the
same sweep on selection questions, projections, then a short LoRA finetune with and without
preventative steering, figures, interference and a report. The headline chooses each trait's
best coherent cell on the selection questions and reports it on the held-out ones
(`persona.analysis.headline.held_out_headlines`), so it carries no winner's curse.
"""

from study.demo.paths import DemoPaths
from study.demo.plan import Stage, plan
from study.demo.run import run_demo
from study.demo.settings import DemoSettings, check_settings_record

__all__ = ["DemoPaths", "DemoSettings", "Stage", "check_settings_record", "plan", "run_demo"]
