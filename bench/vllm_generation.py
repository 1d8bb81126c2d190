"""Benchmark: HF vs vLLM generation, unsteered and steered, with ratios measured in the same run.

Every row generates exactly --new_tokens tokens (stop tokens are masked until then), greedy, so
tokens/s compare like for like. Both backends run with the same number of torch threads (vLLM
would otherwise drop to one). The vLLM engine's start-up is timed separately and excluded from
tokens/s (one warm-up call first). Targets (issue 16): vLLM steered >= 2x HF steered, and vLLM
steered within 1.3x of vLLM unsteered. Also prints how many greedy answers agree between backends.

    .venv-vllm/bin/python bench/vllm_generation.py [--model smollm2-135m] [--rows 16] [--new_tokens 64]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="any load_model spec")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--rows", type=int, default=16, help="prompts (trait questions, repeated as needed)")
    parser.add_argument("--new_tokens", type=int, default=64, help="tokens generated per row")
    parser.add_argument("--batch_size", type=int, default=16, help="HF batch size")
    parser.add_argument("--layer", type=int, default=10, help="steering layer")
    parser.add_argument("--coef", type=float, default=4.0, help="steering coefficient (unit random vector)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each runs every variant (best kept)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for both")
    return parser.parse_args()


def interleaved_best(runs: dict[tuple[str, str], Callable[[], list[str]]], rounds: int):
    """Every round runs every variant once (so load drift on a shared machine hits all alike); best time kept."""
    best: dict[tuple[str, str], tuple[float, list[str]]] = {}
    for _ in range(rounds):
        for key, fn in runs.items():
            start = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - start
            if key not in best or seconds < best[key][0]:
                best[key] = (seconds, out)
    return best


def main() -> None:
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch: vLLM keeps an explicit setting
    import torch

    from persona.evaluation import build_samples
    from persona.generation import HFBackend, chat_prompts
    from persona.models import load_model
    from persona.sampling import SamplingParams
    from persona.steering import Steer
    from persona.traits import load_trait
    from persona.vllm_backend import VLLMBackend

    torch.set_num_threads(args.threads)
    lm = load_model(args.model, device=args.device)
    trait = load_trait("evil", version="eval")
    samples = build_samples(trait, n_per_question=1)
    messages = [samples[i % len(samples)].messages for i in range(args.rows)]
    prompts = chat_prompts(lm.tokenizer, messages)
    seeds = list(range(args.rows))
    params = SamplingParams(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, temperature=0.0)
    vector = torch.randn(lm.num_layers + 1, lm.hidden_size, generator=torch.Generator().manual_seed(0))
    vector = vector / vector.norm(dim=-1, keepdim=True)
    steers = [Steer(vector, args.layer, args.coef)]

    def factory(rows):
        return steers

    hf = HFBackend(lm, args.batch_size)
    start = time.perf_counter()
    vllm = VLLMBackend(lm)
    vllm.generate(prompts[:2], SamplingParams(max_new_tokens=4, temperature=0.0), seeds[:2], progress=False)
    startup = time.perf_counter() - start
    torch.set_num_threads(args.threads)

    runs = {
        ("hf", "unsteered"): lambda: hf.generate(prompts, params, seeds, progress=False),
        ("hf", "steered"): lambda: hf.generate(prompts, params, seeds, factory, progress=False),
        ("vllm", "unsteered"): lambda: vllm.generate(prompts, params, seeds, progress=False),
        ("vllm", "steered"): lambda: vllm.generate(prompts, params, seeds, factory, progress=False),
    }
    tokens = args.rows * args.new_tokens
    results = interleaved_best(runs, args.repeats)
    print(
        f"model {args.model} on {lm.device}, {args.rows} rows x {args.new_tokens} new tokens, greedy, "
        f"{args.threads} torch threads, best of {args.repeats} interleaved rounds; "
        f"vLLM start-up {startup:.1f} s (excluded)"
    )
    print(f"{'backend':<8}{'steering':<11}{'seconds':>9}{'tokens/s':>10}")
    rate = {}
    for (backend, kind), (seconds, _) in results.items():
        rate[backend, kind] = tokens / seconds
        print(f"{backend:<8}{kind:<11}{seconds:>9.2f}{rate[backend, kind]:>10.1f}")
    steered_speedup = rate["vllm", "steered"] / rate["hf", "steered"]
    hook_cost = rate["vllm", "unsteered"] / rate["vllm", "steered"]
    print(f"vLLM steered / HF steered tokens/s: {steered_speedup:.2f}x (target >= 2)")
    print(f"vLLM unsteered / HF unsteered tokens/s: {rate['vllm', 'unsteered'] / rate['hf', 'unsteered']:.2f}x")
    print(f"vLLM unsteered / vLLM steered tokens/s: {hook_cost:.2f}x (target <= 1.3)")
    for kind in ("unsteered", "steered"):
        same = sum(a == b for a, b in zip(results["hf", kind][1], results["vllm", kind][1]))
        print(f"greedy answers identical, HF vs vLLM, {kind}: {same}/{args.rows}")


if __name__ == "__main__":
    main()
