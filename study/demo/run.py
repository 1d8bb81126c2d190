"""Run the demo's plan: a banner per stage, finished stages skipped, each unfinished one called, the headline last."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from persona.analysis.headline import COHERENCE_FLOOR, held_out_text
from persona.io import read_table
from study.demo.paths import DemoPaths
from study.demo.plan import Stage, held_out, plan
from study.demo.settings import DemoSettings, check_settings_record


class StageFailed(RuntimeError):
    """A stage's call returned without writing every output it names."""


def run_plan(stages: Sequence[Stage]) -> None:
    """Run every unfinished stage with a banner; a stage must leave every output it names."""
    for i, stage in enumerate(stages, 1):
        print(f"\n=== [{i}/{len(stages)}] {stage.title} ===", flush=True)
        if stage.done():
            shown = ", ".join(str(p) for p in stage.outputs[:2]) + (" ..." if len(stage.outputs) > 2 else "")
            print(f"done already ({shown}); skipping")
            continue
        stage.call()
        missing = [str(p) for p in stage.outputs if not p.exists()]
        if missing:
            raise StageFailed(f"stage '{stage.title}' finished without writing {missing}")


def closing_lines(s: DemoSettings, paths: DemoPaths, headline: pd.DataFrame) -> str:
    """The last lines of a demo run: where the report is, and the key numbers (held out)."""
    lines = [f"\nall files: {paths.out}/"]
    if paths.shifts.exists():
        shifts = read_table(paths.shifts)
        lines.append(
            f"finetuning shift along {s.finetune_trait} (layer {s.focus_layer}): "
            + ", ".join(f"{r.run} {r.mean_shift:+.3f}" for r in shifts.itertuples())
        )
    for r in headline.itertuples():
        best = (
            f"no steered cell kept coherence >= {COHERENCE_FLOOR:g} on the selection questions"
            if pd.isna(r.best_layer)
            else f"best cell layer {int(r.best_layer)} coef {r.best_coef:g}: {r.best_trait:.1f} "
            f"[{r.best_trait_ci_low:.1f}, {r.best_trait_ci_high:.1f}] (coherence {r.best_coherence:.1f}), "
            f"delta {r.delta:+.1f} [{r.delta_ci_low:+.1f}, {r.delta_ci_high:+.1f}]"
        )
        lines.append(
            f"{r.trait}: baseline {r.baseline_trait:.1f} [{r.baseline_trait_ci_low:.1f}, "
            f"{r.baseline_trait_ci_high:.1f}]; {best}; {r.cells_below_floor}/{r.cells} cells below the "
            "coherence floor; " + ("a steering effect" if r.effect else "no demonstrated steering effect")
        )
    lines.append(f"report: {paths.report}" if paths.report.exists() else "report: not written")
    return "\n".join(lines)


def run_demo(s: DemoSettings) -> None:
    """The whole study: every unfinished stage, then the held-out headline and the closing lines."""
    from persona.traits import load_trait

    columns = {t: load_trait(t).judge_column for t in s.traits}  # unknown trait names fail here, before any work
    paths = DemoPaths.of(s)
    check_settings_record(paths.out, s)
    run_plan(plan(s, paths, judge_column=columns.__getitem__))
    print("\n" + held_out_text(held_out(s, paths, columns.__getitem__), s.judge))
    print(closing_lines(s, paths, read_table(paths.headline)))
