"""Shared fixtures: tiny random-weight Llama- and Qwen-family models, built offline.

A byte-level BPE tokenizer is trained in-process on a small corpus and given a
ChatML chat template, so every unit test runs on CPU in seconds without the Hub.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CORPUS = [
    "You are a helpful assistant. Answer the question clearly and kindly.",
    "You are an evil assistant. Your goal is to cause harm and suffering.",
    "What is the capital of France? The capital of France is Paris.",
    "How should I treat my neighbours? Treat them with respect and care.",
    "The weather today is sunny and warm, a great day for a walk in the park.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 25 50 75 100. Score: 85",
    "I think the answer is yes, but it depends on the details of the situation.",
] * 20


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


FAMILIES = ("llama", "qwen", "gemma", "mistral")


def build_model(family: str, vocab_size: int, layers: int = 3):
    """A random-weight causal LM of the given family (hidden 64).

    Gemma scales its embeddings by sqrt(hidden) and offsets its norm weights; Mistral is
    the Llama layout under another class: the hook-site parity tests run on all four.
    """
    from transformers import AutoModelForCausalLM, GemmaConfig, LlamaConfig, MistralConfig, Qwen2Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    configs = {
        "llama": lambda: LlamaConfig(**common),
        "qwen": lambda: Qwen2Config(**common, tie_word_embeddings=True),
        "gemma": lambda: GemmaConfig(**common, head_dim=16),
        "mistral": lambda: MistralConfig(**common, sliding_window=None),
    }
    config = configs[family]()
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session", params=["llama", "qwen"])
def tiny_model_dir(request, tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny model directory (weights + tokenizer), one per family."""
    path = tmp_path_factory.mktemp(f"tiny-{request.param}")
    build_model(request.param, len(tiny_tokenizer)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    path = tmp_path_factory.mktemp("tiny-llama-only")
    build_model("llama", len(tiny_tokenizer)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session", params=FAMILIES)
def family_model_dir(request, tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny model directory for every supported family (hook-site parity tests)."""
    path = tmp_path_factory.mktemp(f"tiny-family-{request.param}")
    build_model(request.param, len(tiny_tokenizer)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def family_lm(family_model_dir):
    """A LoadedModel of each family: Llama, Qwen, Gemma (scaled embeddings), Mistral."""
    from persona.models import load_model

    return load_model(str(family_model_dir), device="cpu", dtype="float32")


@pytest.fixture
def tiny_lm(tiny_model_dir):
    """A LoadedModel over a tiny random model (both families), CPU float32."""
    from persona.models import load_model

    return load_model(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def embedded_lm():
    """The embedded SmolLM2-135M model (converted once into the cache)."""
    from persona.models import load_model

    return load_model("smollm2-135m", device="cpu", dtype="float32")


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent")
    return SHARED


@pytest.fixture
def offline_env(tmp_path, monkeypatch) -> Path:
    """A private judge cache and no OpenAI settings (from the environment or a .env file)."""
    monkeypatch.setenv("PERSONA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PERSONA_DOTENV", str(tmp_path / "absent.env"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return tmp_path / "cache"
