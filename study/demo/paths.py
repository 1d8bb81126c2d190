"""Where every artifact of a demo run lives (all under the run's folder)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from persona.evaluation import sweep_filename
from study.demo.settings import DemoSettings

VECTOR_KIND = "response_avg"


@dataclass(frozen=True)
class DemoPaths:
    """Where every artifact of a demo run lives (all under `out`); sweep cells are named by `steering_type`."""

    out: Path
    steering_type: str

    @classmethod
    def of(cls, s: DemoSettings) -> DemoPaths:
        """The paths of a run with settings `s` (so file names always match the commands' settings)."""
        return cls(Path(s.out), s.steering_type)

    @property
    def figs(self) -> Path:
        return self.out / "figs"

    def extract(self, trait: str, kind: str) -> Path:
        return self.out / "extract" / f"{trait}_{kind}_instruct.csv"

    def vector(self, trait: str) -> Path:
        return self.out / "vectors" / f"{trait}_{VECTOR_KIND}_diff.pt"

    def baseline(self, trait: str) -> Path:
        return self.out / "steering" / f"{trait}_baseline.csv"

    def sweep(self, trait: str, layer: int, coef: float) -> Path:
        return self.out / "steering" / sweep_filename(trait, self.steering_type, layer, coef)

    def selection_baseline(self, trait: str) -> Path:
        return self.out / "selection" / f"{trait}_baseline.csv"

    def selection_sweep(self, trait: str, layer: int, coef: float) -> Path:
        return self.out / "selection" / sweep_filename(trait, self.steering_type, layer, coef)

    def projections(self, trait: str) -> Path:
        return self.out / "projection" / f"{trait}_projections.csv"

    def finetune_data(self, trait: str) -> Path:
        return self.out / "finetune" / "data" / f"{trait}_misaligned_2.jsonl"

    def run_dir(self, trait: str, steered: bool) -> Path:
        return self.out / "finetune" / f"{trait}_{'steer' if steered else 'plain'}"

    def shift_file(self, trait: str, steered: bool) -> Path:
        return self.out / "finetune" / f"{self.run_dir(trait, steered).name}_shift.csv"

    @property
    def shifts(self) -> Path:
        return self.out / "finetune" / "finetuning_shift.csv"

    @property
    def interference(self) -> Path:
        return self.out / "interference"

    @property
    def headline(self) -> Path:
        return self.out / "headline.csv"

    @property
    def report(self) -> Path:
        return self.out / "report.html"


def cell_files(s: DemoSettings, paths: DemoPaths, trait: str) -> list[Path]:
    """The baseline and every sweep cell of a trait on the held-out eval questions, in plan order."""
    return [paths.baseline(trait)] + [paths.sweep(trait, layer, coef) for layer in s.layers for coef in s.coefs]


def selection_files(s: DemoSettings, paths: DemoPaths, trait: str) -> list[Path]:
    """The same cells on the selection (extract) questions, which choose the best cell."""
    return [paths.selection_baseline(trait)] + [
        paths.selection_sweep(trait, layer, coef) for layer in s.layers for coef in s.coefs
    ]
