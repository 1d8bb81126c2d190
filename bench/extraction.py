"""Benchmark: activation extraction, the naive per-sample loop vs `persona.activations.capture`.

Data: 48 real answers of the embedded model (12 `evil` extract questions x pos/neg system
prompts x 2 instructions, up to 110 new tokens, greedy, cached after the first run), ~8k tokens.
  (naive)   one sample at a time, full model forward with every hidden state and the LM
            head, then the three summaries at every layer (the seed project's loop)
  (capture) `capture(..., reduce="mean")` at every layer, for several batch sizes
Also: the decoder FLOP rate each achieves against a measured matmul rate on this machine.
All ratios come from this run, on this machine: every timed round runs every variant in
turn (best round kept), so a load swing on a shared machine hits them all.

    .venv/bin/python bench/extraction.py [--model smollm2-135m] [--device cpu] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
from torch import nn

from persona.activations import capture, encode_pairs
from persona.generation import chat_prompts, generate_answers
from persona.models import load_model
from persona.settings import cache_dir
from persona.sites import decoder_layers
from persona.traits import load_trait

N_QUESTIONS, MAX_NEW_TOKENS, BATCH_SIZES = 12, 110, (1, 2, 4, 16, 48)


def bench_data(lm) -> tuple[list[str], list[str]]:
    """48 chat prompts and the model's greedy answers (cached: generation is not what we measure)."""
    trait = load_trait("evil")
    convs = [
        [{"role": "system", "content": trait.system_prompt(kind, k)}, {"role": "user", "content": q}]
        for q in trait.questions[:N_QUESTIONS]
        for kind in ("pos", "neg")
        for k in (0, 1)
    ]
    prompts = chat_prompts(lm.tokenizer, convs)
    path = cache_dir() / "bench" / f"extraction_{lm.name.replace('/', '_')}_{len(prompts)}_{MAX_NEW_TOKENS}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached["prompts"] == prompts:
            return prompts, cached["answers"]
    answers = generate_answers(lm, convs, max_new_tokens=MAX_NEW_TOKENS, temperature=0.0, batch_size=16)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"prompts": prompts, "answers": answers}))
    return prompts, answers


def naive(lm, prompts, answers) -> None:
    """The seed project's loop: per sample, full forward (LM head included), all hidden states."""
    with torch.inference_mode():
        for p, a in zip(prompts, answers):
            ids = lm.tokenizer(p + a, add_special_tokens=False, return_tensors="pt").input_ids.to(lm.device)
            n = len(lm.tokenizer(p, add_special_tokens=False).input_ids)
            hidden = lm.model(input_ids=ids, output_hidden_states=True).hidden_states
            for h in hidden:
                h[:, :n].mean(1).cpu(), h[:, n:].mean(1).cpu(), h[:, n - 1].cpu()


def decoder_flops(lm, lengths: list[int]) -> float:
    """Matmul FLOPs of the decoder blocks over the real tokens: 2 x linear weights per token + attention."""
    blocks = decoder_layers(lm.model)
    linear = sum(m.weight.numel() for m in blocks.modules() if isinstance(m, nn.Linear))
    cfg = lm.model.config
    attn_width = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    causal_pairs = sum(n * (n + 1) // 2 for n in lengths)  # query-key pairs under the causal mask
    return 2.0 * linear * sum(lengths) + 4.0 * attn_width * causal_pairs * len(blocks)


def lm_head_flops(lm, lengths: list[int]) -> float:
    return 2.0 * lm.model.get_output_embeddings().weight.numel() * sum(lengths)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def matmul_jobs(lm, device: torch.device) -> dict[str, tuple[float, object]]:
    """GEMMs to measure the machine's matmul rate: square, and the model's MLP shape at two token counts."""
    dtype, h = lm.model.dtype, lm.hidden_size
    inter = getattr(lm.model.config, "intermediate_size", 4 * h)
    jobs = {}
    for m, k, n in ((2048, 2048, 2048), (256, h, inter), (4096, h, inter)):
        a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
        jobs[f"{m}x{k}x{n}"] = (2.0 * m * k * n, lambda a=a, b=b: [torch.mm(a, b) for _ in range(5)])
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="timed rounds after a warm-up; every round runs every variant (interleaved)",
    )
    args = parser.parse_args()
    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    device = lm.device
    prompts, answers = bench_data(lm)
    lengths = [len(e.ids) for e in encode_pairs(lm.tokenizer, prompts, answers)]
    tokens = sum(lengths)
    dec, head = decoder_flops(lm, lengths), lm_head_flops(lm, lengths)

    gemms = matmul_jobs(lm, device)
    jobs = {name: fn for name, (_, fn) in gemms.items()}
    jobs["naive"] = lambda: naive(lm, prompts, answers)
    for bs in BATCH_SIZES:
        jobs[bs] = lambda bs=bs: capture(lm, prompts, answers, batch_size=bs, reduce="mean", progress=False)
    best = {name: math.inf for name in jobs}
    loads = []
    for round_ in range(args.repeats + 1):  # round 0 warms up; rounds interleave, so load swings hit all variants
        loads.append(os.getloadavg()[0])
        for name, fn in jobs.items():
            seconds = timed(fn, device)
            if round_:
                best[name] = min(best[name], seconds)
    peak, peak_shape = max((5 * flops / best[name], name) for name, (flops, _) in gemms.items())

    print(f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs during the run")
    print(
        f"{lm.name} on {device} ({lm.model.dtype}, {torch.get_num_threads()} threads): {len(prompts)} samples, "
        f"{tokens} tokens (min {min(lengths)}, max {max(lengths)}); decoder {dec / tokens / 1e6:.0f} MFLOP/token, "
        f"LM head {head / tokens / 1e6:.0f} MFLOP/token"
    )
    print(
        "matmul: "
        + ", ".join(f"{name} {5 * flops / best[name] / 1e9:.1f}" for name, (flops, _) in gemms.items())
        + f" GFLOP/s; peak = {peak_shape}"
    )
    t_naive = best["naive"]
    print(
        f"naive per-sample loop: {tokens / t_naive:8.0f} tok/s  decoder+head {(dec + head) / t_naive / 1e9:6.1f} "
        f"GFLOP/s = {(dec + head) / t_naive / peak:4.0%} of matmul peak "
        f"(decoder only {dec / t_naive / peak:4.0%})"
    )
    sorted_lengths = sorted(lengths, reverse=True)
    for bs in BATCH_SIZES:
        t = best[bs]
        padded = sum(
            max(sorted_lengths[i : i + bs]) * len(sorted_lengths[i : i + bs]) for i in range(0, len(sorted_lengths), bs)
        )
        print(
            f"capture batch {bs:3d}:      {tokens / t:8.0f} tok/s  decoder {dec / t / 1e9:6.1f} GFLOP/s = "
            f"{dec / t / peak:4.0%} of matmul peak  padding +{padded / tokens - 1:4.1%}  "
            f"speed-up vs naive {t_naive / t:4.2f}x"
        )


if __name__ == "__main__":
    main()
