"""Benchmark: one steering sweep in-process and on a local 2-CPU Ray cluster, same run, same files.

Grid (the embedded model's defaults in scripts/eval_steering_sweep.sh): 2 layers x 2 coefs,
5 questions x 1 greedy sample x 64 new tokens per cell, scored by the offline likelihood judge.
Each cell is a unit; Ray packs them into tasks of up to persona.jobs.UNITS_PER_TASK units.

Every worker computes on one thread (Ray gives a 1-CPU actor OMP_NUM_THREADS=1), and so does the
local run here, so a unit's work is the same amount of computation on both sides; on a shared
machine this also keeps threads from spinning while they wait for a core.

Printed: wall times; the Ray fixed costs (starting the cluster, starting the worker actors,
each worker loading the model); and the scheduling overhead per unit: a task's round trip
as the driver sees it minus the time the worker spent in it (model load and the units' work),
summed over tasks, divided by the units. The target is an overhead per unit under 5% of a
unit's work. The outputs of both runs are compared byte for byte.

    nice .venv/bin/python bench/distributed.py [--model smollm2-135m] [--layers "10 15"] [--coefs "4 8"]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from eval.eval_persona import parse_args as eval_args
from persona.cli import eval_spec_from_args, split_list
from persona.evaluation import sweep_jobs
from persona.jobs import LocalRunner, RayRunner, Summary, sweep_units
from persona.models import load_model
from persona.vectors import PersonaVector

TARGET = 0.05


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layers", default="10 15")
    parser.add_argument("--coefs", default="4 8")
    parser.add_argument("--max_questions", type=int, default=5)
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster (one worker each)")
    return parser.parse_args()


def outputs(folder: Path) -> dict[str, bytes]:
    """The scored CSVs and their settings records."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name.endswith((".csv", ".settings.json"))}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    lm = load_model(args.model, device="cpu")
    vector = torch.randn(lm.num_layers + 1, lm.hidden_size, generator=torch.Generator().manual_seed(0))
    vector = PersonaVector(vector / vector.norm(dim=-1, keepdim=True))
    del lm
    flags = [
        "--model",
        args.model,
        "--trait",
        "evil",
        "--version",
        "eval",
        "--output_dir",
        str(root),
        "--n_per_question",
        "1",
        "--max_questions",
        str(args.max_questions),
        "--max_tokens",
        str(args.max_tokens),
        "--judge_model",
        "likelihood",
        "--no_judge_cache",
        "--device",
        "cpu",
    ]
    spec = eval_spec_from_args(eval_args(flags))
    layers, coefs = split_list(args.layers, int), split_list(args.coefs, float)

    def units(folder: str) -> list:
        return sweep_units(sweep_jobs("evil", vector, layers, coefs, "response", root / folder), spec)

    n = len(layers) * len(coefs)
    print(
        f"sweep: {n} cells ({len(layers)} layers x {len(coefs)} coefs), {args.max_questions} questions x "
        f"{args.max_tokens} tokens per cell, model {args.model}, torch threads {torch.get_num_threads()}"
    )
    local = LocalRunner().run(units("local"), progress=False)
    print(
        f"local: {local.report()}; wall {local.wall_s:.1f} s (model load {local.load_s:.1f} s, "
        f"units {local.work_s:.1f} s = {local.work_s / n:.2f} s per unit)"
    )

    import ray

    start = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - start
    try:
        distributed: Summary = RayRunner().run(units("ray"), progress=False)
    finally:
        ray.shutdown()
    per_unit_work = distributed.work_s / n
    per_unit_overhead = distributed.overhead_s / n
    print(
        f"ray ({args.cpus} workers): {distributed.report()}; wall {distributed.wall_s:.1f} s "
        f"+ cluster start {init_s:.1f} s"
    )
    print(
        f"  fixed: worker actors ready {distributed.startup_s:.1f} s, model loads {distributed.load_s:.1f} s "
        f"(summed over workers)"
    )
    print(
        f"  {distributed.tasks} tasks; units {distributed.work_s:.1f} s = {per_unit_work:.2f} s per unit "
        f"(summed over workers)"
    )
    ratio = per_unit_overhead / per_unit_work
    print(
        f"  scheduling overhead per unit: {per_unit_overhead * 1000:.1f} ms = {ratio:.2%} of a unit's work "
        f"(target < {TARGET:.0%}: {'met' if ratio < TARGET else 'NOT met'})"
    )
    print(
        f"  wall ratio ray/local: {distributed.wall_s / local.wall_s:.2f} "
        f"({(distributed.wall_s + init_s) / local.wall_s:.2f} with the cluster start)"
    )
    same = outputs(root / "local") == outputs(root / "ray")
    print(f"outputs identical: {same} ({len(outputs(root / 'ray'))} CSV and settings files in {root})", flush=True)


if __name__ == "__main__":
    main()
