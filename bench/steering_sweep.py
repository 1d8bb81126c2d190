"""Benchmark: a steering sweep three ways, with ratios measured in the same run.

Grid: 3 layers x 2 coefs x 10 questions x 32 new tokens, greedy, embedded model.
  (A) reference structure: every cell is a fresh process that loads the model and generates
  (B) one process, cell by cell
  (C) one process, all cells packed into shared batches (per-row coefficients and layers)
The cost of the hooks themselves (steered at coefficient 0 vs unsteered), of sampling and of
packing at several batch sizes is measured by bench/generation.py.

    .venv/bin/python bench/steering_sweep.py [--model smollm2-135m] [--batch_size 64]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch

from persona.evaluation import Cell, build_samples, generate_cells
from persona.generation import HFBackend, SamplingParams
from persona.models import load_model
from persona.steering import Steer
from persona.traits import load_trait

LAYERS, COEFS, N_QUESTIONS, NEW_TOKENS = (8, 12, 16), (4.0, 8.0), 10, 32


def setup(model: str):
    lm = load_model(model, device="cpu")
    trait = load_trait("evil", version="eval")
    trait.questions = trait.questions[:N_QUESTIONS]
    samples = build_samples(trait, n_per_question=1)
    vector = torch.randn(lm.num_layers + 1, lm.hidden_size, generator=torch.Generator().manual_seed(0))
    vector = vector / vector.norm(dim=-1, keepdim=True)
    return lm, samples, vector


def run_cells(lm, samples, cells, batch_size: int) -> list:
    params = SamplingParams(max_new_tokens=NEW_TOKENS, temperature=0.0)
    backend = HFBackend(lm, batch_size)
    return generate_cells(backend, lm.tokenizer, samples, cells, params, seed=0)


def one_cell_main(model: str, layer: int, coef: float, batch_size: int) -> None:
    """Entry for (A): a fresh process that loads the model and generates one cell."""
    lm, samples, vector = setup(model)
    run_cells(lm, samples, [Cell("c", [Steer(vector, layer, coef)])], batch_size)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--one_cell", nargs=2, type=float, metavar=("LAYER", "COEF"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_cell:
        one_cell_main(args.model, int(args.one_cell[0]), args.one_cell[1], args.batch_size)
        return
    torch.set_num_threads(torch.get_num_threads())
    lm, samples, vector = setup(args.model)
    cells = [Cell(f"L{layer}_c{coef}", [Steer(vector, layer, coef)]) for layer in LAYERS for coef in COEFS]
    run_cells(lm, samples[:2], cells[:1], args.batch_size)  # warm-up

    t_b, by_cell = timed(lambda: [run_cells(lm, samples, [c], args.batch_size)[0] for c in cells])
    t_c, packed = timed(lambda: run_cells(lm, samples, cells, args.batch_size))
    same = all(a["answer"].tolist() == b["answer"].tolist() for a, b in zip(by_cell, packed))

    def one_process(cell_layer: int, coef: float) -> None:
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--model",
                args.model,
                "--batch_size",
                str(args.batch_size),
                "--one_cell",
                str(cell_layer),
                str(coef),
            ],
            check=True,
        )

    t_a, _ = timed(lambda: [one_process(layer, coef) for layer in LAYERS for coef in COEFS])

    rows = len(cells) * len(samples)
    print(
        f"\ngrid: {len(LAYERS)} layers x {len(COEFS)} coefs x {len(samples)} questions x {NEW_TOKENS} tokens "
        f"= {rows} answers, greedy, batch_size {args.batch_size}, {torch.get_num_threads()} threads"
    )
    print(f"(A) process per cell   {t_a:7.2f} s")
    print(f"(B) one process, cells {t_b:7.2f} s   A/B = {t_a / t_b:.2f}x")
    print(f"(C) packed sweep       {t_c:7.2f} s   A/C = {t_a / t_c:.2f}x   B/C = {t_b / t_c:.2f}x")
    print(f"packed answers equal cell-by-cell answers: {same}")


if __name__ == "__main__":
    main()
