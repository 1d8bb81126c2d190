"""Benchmark: `HFBackend` generation speed, every ratio measured in the same run.

Rows are chats of the `evil` eval questions. Every answer runs to exactly --new_tokens tokens
(min_new_tokens = max_new_tokens), so two variants differ only in what is being measured. At
each --batch_sizes value:
  greedy vs sampled (temperature 1)       sampled / greedy time     target <= 1.3x (CPU), <= 1.2x (H100)
  sampled vs steered at coefficient 0     steered / unsteered time  target <= 1.10x, answers identical
  a sampled steering sweep (--layers x --coefs cells of --sweep_rows rows each), its cells one
  by one vs all cells packed into shared batches: cells / packed time, target > 1, answers identical
Every timed round runs every variant in turn and the best round is kept, so a load swing on a
shared machine hits them all and the first round doubles as the warm-up (on CUDA it also compiles
the decode step for each batch shape: static cache + torch.compile), hence --repeats >= 2.

    .venv/bin/python bench/generation.py                       # embedded model, CPU
    .venv/bin/python bench/generation.py --model random:qwen3-4b --device cuda \\
        --batch_sizes 64 256 --rows 256 --new_tokens 256 --sweep_rows 64 --repeats 2
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch

from persona.evaluation import Cell, Sample, build_samples, generate_cells
from persona.generation import HFBackend, SamplingParams
from persona.models import LoadedModel, load_model
from persona.steering import Steer
from persona.traits import load_trait


def samples_for(rows: int) -> list[Sample]:
    """`rows` chats: the eval questions in order, as many samples per question as needed."""
    trait = load_trait("evil", version="eval")
    return build_samples(trait, n_per_question=math.ceil(rows / len(trait.questions)))[:rows]


def unit_vector(lm: LoadedModel) -> torch.Tensor:
    vec = torch.randn(lm.num_layers + 1, lm.hidden_size, generator=torch.Generator().manual_seed(0))
    return vec / vec.norm(dim=-1, keepdim=True)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def answers(frames) -> list[list[str]]:
    return [f["answer"].tolist() for f in frames]


def variants(lm: LoadedModel, args: argparse.Namespace, batch_size: int) -> dict[str, Callable[[], object]]:
    """The timed workloads at one batch size; each returns its answers (one list per cell)."""
    backend = HFBackend(lm, batch_size)
    greedy = SamplingParams(args.new_tokens, 0.0, min_new_tokens=args.new_tokens)
    sampled = SamplingParams(args.new_tokens, 1.0, min_new_tokens=args.new_tokens)
    rows, sweep_rows = samples_for(args.rows), samples_for(args.sweep_rows)
    vec = unit_vector(lm)
    zero = Cell("coef 0", [Steer(vec, args.layers[0], 0.0)])
    cells = [Cell(f"L{layer} c{coef}", [Steer(vec, layer, coef)]) for layer in args.layers for coef in args.coefs]

    def run(samples, cell_list, params):
        return lambda: answers(generate_cells(backend, lm.tokenizer, samples, cell_list, params, seed=0))

    return {
        "greedy": run(rows, [Cell("plain")], greedy),
        "sampled": run(rows, [Cell("plain")], sampled),
        "steered (coef 0)": run(rows, [zero], sampled),
        "sweep, cell by cell": lambda: [a for c in cells for a in run(sweep_rows, [c], sampled)()],
        "sweep, packed": run(sweep_rows, cells, sampled),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="model spec (random:qwen3-4b = Qwen3-4B's shape)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", help="auto = float32 on CPU, bfloat16 on CUDA")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rows", type=int, default=32, help="chats in the greedy/sampled/steered runs")
    parser.add_argument("--new_tokens", type=int, default=16, help="new tokens per answer (forced)")
    parser.add_argument("--sweep_rows", type=int, default=6, help="chats per sweep cell")
    parser.add_argument("--layers", type=int, nargs="+", default=None, help="sweep layers (default: L/2, 3L/4)")
    parser.add_argument("--coefs", type=float, nargs="+", default=[4.0, 8.0], help="sweep coefficients")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds (best kept)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is steadier on a crowded machine)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    args.layers = args.layers or [lm.num_layers // 2, 3 * lm.num_layers // 4]
    runs = {b: variants(lm, args, b) for b in args.batch_sizes}
    best: dict[tuple[int, str], float] = {}
    outputs: dict[tuple[int, str], object] = {}
    for _ in range(args.repeats):
        for b, named in runs.items():
            for name, fn in named.items():
                seconds, outputs[b, name] = timed(fn, lm.device)
                best[b, name] = min(seconds, best.get((b, name), math.inf))

    threads = f", {torch.get_num_threads()} threads" if lm.device.type == "cpu" else ""
    n_cells = len(args.layers) * len(args.coefs)
    print(
        f"\n{args.model} on {lm.device} ({lm.model.dtype}{threads}); {args.rows} rows x {args.new_tokens} new "
        f"tokens (every answer full length); sweep {n_cells} cells x {args.sweep_rows} rows; "
        f"best of {args.repeats} rounds"
    )
    print("| batch | variant | time (s) | new tokens/s | ratio |\n|---:|---|---:|---:|---|")
    for b in args.batch_sizes:
        ratios = {
            "sampled": ("sampled / greedy", best[b, "sampled"] / best[b, "greedy"]),
            "steered (coef 0)": ("steered / unsteered", best[b, "steered (coef 0)"] / best[b, "sampled"]),
            "sweep, packed": ("cells / packed", best[b, "sweep, cell by cell"] / best[b, "sweep, packed"]),
        }
        for name in runs[b]:
            rows = args.sweep_rows * n_cells if name.startswith("sweep") else args.rows
            label, ratio = ratios.get(name, ("", None))
            shown = f"{label} {ratio:.2f}x" if ratio is not None else ""
            print(f"| {b} | {name} | {best[b, name]:.2f} | {rows * args.new_tokens / best[b, name]:,.0f} | {shown} |")
        same_zero = outputs[b, "steered (coef 0)"] == outputs[b, "sampled"]
        same_sweep = outputs[b, "sweep, cell by cell"] == outputs[b, "sweep, packed"]
        print(
            f"batch {b}: coef-0 answers equal unsteered: {same_zero}; packed answers equal cell by cell: {same_sweep}"
        )


if __name__ == "__main__":
    main()
