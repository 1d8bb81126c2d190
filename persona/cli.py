"""Argument helpers shared by the command-line entry points."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from persona.defaults import EMBEDDED_MODEL
from persona.steering import Op, Positions, Steer
from persona.vectors import PersonaVector


def split_list(values: Sequence[str] | str | None, cast: Callable[[str], Any] = str) -> list[Any]:
    """Flatten list flags given as separate arguments or as one quoted, space-separated string.

    `--layer 20 25` and `--layer "20 25"` (the original README's form) both give [20, 25].
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[Any] = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            try:
                out.append(cast(part))
            except ValueError:
                raise argparse.ArgumentTypeError(f"invalid value {part!r}") from None
    return out


def broadcast(flag: str, values: Sequence[Any], n: int) -> list[Any]:
    """Pair list flags: a single value broadcasts to `n`, otherwise lengths must match."""
    values = list(values)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"--{flag} has {len(values)} values but {n} are needed (one each, or a single value)")
    return values


def load_steers(vector_paths: Sequence[str], layers: Sequence[int], coefs: Sequence[float],
                positions: Positions = "response", op: Op = "add") -> list[Steer]:
    """Steers from the --vector_path/--layer/--coef lists: they pair up; a single value broadcasts."""
    n = max(len(vector_paths), len(layers), len(coefs))
    paths = broadcast("vector_path", vector_paths, n)
    vectors = {p: PersonaVector.load(p) for p in dict.fromkeys(paths)}
    return [Steer(vectors[p], layer=int(layer), coef=float(c), positions=positions, op=op)
            for p, layer, c in zip(paths, broadcast("layer", layers, n), broadcast("coef", coefs, n))]


def setup_logging(verbose: bool = False) -> None:
    """Scripts print summaries; library modules log through `logging` at INFO."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_model_args(parser: argparse.ArgumentParser, flag: str = "--model") -> None:
    """The model flag (default: the embedded model) plus device/dtype overrides."""
    parser.add_argument(flag, default=EMBEDDED_MODEL,
                        help="Hub id, local dir, LoRA checkpoint or training output dir "
                             "(default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: bf16 on CUDA, fp32 on CPU)")


def run_cli(main: Callable[[], int]) -> None:
    """Run a CLI `main`; input errors (bad file, vector, layer, model, missing key) end in one line, exit 2."""
    from persona.models import ModelLoadError
    from persona.settings import MissingSettingError

    try:
        code = main()
    except (ValueError, FileNotFoundError, ModelLoadError, MissingSettingError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)
