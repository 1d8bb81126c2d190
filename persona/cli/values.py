"""Flag values: numbers that must be finite, lists given either way, layers or auto, counts >= 1, steers."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy modules load when used, so light CLIs (layout, traits) start fast
    from persona.steering import Op, Positions, Steer


def finite_float(text: str) -> float:
    """An argparse `type` for float flags: NaN, inf and overflowing values (1e400) are usage errors.

    A NaN temperature or coefficient passes every `<`/`>` check and silently empties the answers.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a finite number (nan, inf and values beyond 1.8e308 are refused)"
        )
    return value


def split_list(values: Sequence[str] | str | None, cast: Callable[[str], Any] = str, flag: str = "") -> list[Any]:
    """Flatten list flags given as separate arguments or as one quoted, space-separated string.

    `--layer 20 25` and `--layer "20 25"` (the original README's form) both give [20, 25].
    `flag` names the option in the error for a value `cast` rejects.
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
            except argparse.ArgumentTypeError as err:
                raise argparse.ArgumentTypeError(f"{flag + ': ' if flag else ''}{err}") from None
            except ValueError:
                kind = getattr(cast, "__name__", "value")
                raise argparse.ArgumentTypeError(
                    f"{flag + ': ' if flag else ''}invalid value {part!r} (expected {kind})"
                ) from None
    return out


def layer_arg(value: str) -> int | str:
    """A layer flag's value: an integer, or "auto" (the best held-out layer, persona.layer_choice)."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {value!r} (expected an integer or auto)") from None


def broadcast(flag: str, values: Sequence[Any], n: int) -> list[Any]:
    """Pair list flags: a single value broadcasts to `n`, otherwise lengths must match."""
    values = list(values)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"--{flag} has {len(values)} values but {n} are needed (one each, or a single value)")
    return values


def load_steers(
    vector_paths: Sequence[str],
    layers: Sequence[int],
    coefs: Sequence[float],
    positions: Positions = "response",
    op: Op = "add",
) -> list[Steer]:
    """Steers from the --vector_path/--layer/--coef lists: they pair up; a single value broadcasts."""
    from persona.steering import Steer
    from persona.vectors import PersonaVector

    n = max(len(vector_paths), len(layers), len(coefs))
    paths = broadcast("vector_path", vector_paths, n)
    vectors = {p: PersonaVector.load(p) for p in dict.fromkeys(paths)}
    return [
        Steer(vectors[p], layer=int(layer), coef=float(c), positions=positions, op=op)
        for p, layer, c in zip(paths, broadcast("layer", layers, n), broadcast("coef", coefs, n))
    ]


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def bool_value(text: str) -> bool:
    """An argparse type for `--flag=False` / `--flag True` (the original scripts' spelling)."""
    value = text.strip().lower()
    if value not in _TRUE | _FALSE:
        raise argparse.ArgumentTypeError(f"{text!r} is not a boolean: use True or False")
    return value in _TRUE


def add_bool_flag(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """A flag that is off by default, on when given bare, and `--flag=False|True` as the original passes it."""
    parser.add_argument(flag, nargs="?", const=True, default=False, type=bool_value, metavar="True|False", help=help)


def require_positive(parser: argparse.ArgumentParser, args: argparse.Namespace, *flags: str) -> None:
    """Counts and sizes (`--n_per_question`, `--batch_size`, ...) must be at least 1: a usage error otherwise."""
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None and value < 1:
            parser.error(f"{flag} must be at least 1, got {value}")
