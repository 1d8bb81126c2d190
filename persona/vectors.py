"""Persona vectors: the `[num_layers + 1, hidden]` tensor, its metadata, and the files they live in.

Row L of a vector is `hidden_states[L]`: row 0 the embedding output, row L the output of
decoder block L (the last row after the final norm). On disk a vector is a bare float32
tensor (the original study's format, readable by its code) and the metadata lives in
`<trait>_vectors.json` beside it, one file per trait and folder for all its kinds. Another
extraction method (`persona.extraction_methods`) names its files `<trait>_<kind>_<suffix>.pt`
with `<trait>_<suffix>_vectors.json`; `vector_filename` is the one place names are decided.

`PersonaVector` wraps both so a notebook can do arithmetic, compare vectors and steer:

    evil = PersonaVector.load("output/persona_vectors/model/evil_response_avg_diff.pt")
    with evil.apply(lm.model, layer=20, coef=1.5):
        ...
    handle = (evil - 0.5 * humor).attach(lm.model, layer=20, coef=2.0); ...; handle.remove()
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from persona.checks import check_finite
from persona.errors import InputError
from persona.extraction_methods import DEFAULT_METHOD, get_method
from persona.io import save_tensor, write_json
from persona.sites import VectorShapeError
from persona.steering import Op, Positions, Steer, steering

log = logging.getLogger(__name__)

VECTOR_KINDS = ("prompt_avg", "response_avg", "prompt_last")
LAYER_CONVENTION = (
    "row L = hidden_states[L]: row 0 = embedding output, row L = output of decoder block L "
    "(the last row after the model's final norm)"
)
# `{trait}_{kind}_{suffix}.pt`: suffix `diff` for mean_diff (the original study's name), else the method's
_FILE_NAME = re.compile(r"(?P<trait>.+)_(?P<kind>" + "|".join(VECTOR_KINDS) + r")_(?P<suffix>[A-Za-z0-9_]+)\.pt")
MEAN_DIFF_SUFFIX = "diff"


class VectorFileError(InputError):
    """A vector file exists but does not hold a persona vector."""


def load_vector(path: str | os.PathLike) -> Tensor:
    """Load a persona vector file safely (`weights_only=True`) as a float32 1-D or 2-D tensor.

    Accepts a bare tensor (as the original study wrote) or a dict with a `vector` entry.
    A complex tensor, or one holding NaN or inf, is refused (`NonFiniteError`, naming the
    first layer row that is not finite): it would steer or project to NaN silently.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vector file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle with code in it, a truncated or non-torch file
        raise VectorFileError(
            f"{path} is not a readable tensor file ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else 'no detail'}); "
            "pass a .pt file written by generate_vec.py"
        ) from err
    if isinstance(obj, dict):
        if "vector" not in obj:
            raise VectorFileError(f"{path}: dict without a 'vector' entry (keys: {sorted(obj)})")
        obj = obj["vector"]
    if not isinstance(obj, Tensor) or obj.dim() not in (1, 2):
        raise VectorFileError(
            f"{path}: expected a [num_layers+1, hidden] tensor, got "
            f"{type(obj).__name__} {tuple(getattr(obj, 'shape', ()))}"
        )
    fix = "re-extract it with generate_vec.py from answers that are not empty"
    return check_finite(obj, f"vector file {path}", fix=fix).float()


def save_vector(path: str | os.PathLike, vector: Tensor) -> None:
    """Write a vector as a bare float32 tensor (readable by the original code too), atomically; never a NaN one."""
    check_finite(vector, f"vector for {path}", fix="nothing was written; check the inputs it was computed from")
    save_tensor(path, vector.detach().to("cpu", torch.float32).contiguous())


def vector_filename(trait: str, kind: str, method: str = DEFAULT_METHOD) -> str:
    """The one place vector files are named: `{trait}_{kind}_diff.pt` for mean_diff, else `{trait}_{kind}_{suffix}.pt`.

    The suffix is the registered method's (`pca_diff` -> `pca`, `probe` -> `probe`).
    """
    if kind not in VECTOR_KINDS:
        raise ValueError(f"unknown vector kind {kind!r}; use one of {VECTOR_KINDS}")
    return f"{trait}_{kind}_{get_method(method).suffix}.pt"


def metadata_filename(trait: str, method: str = DEFAULT_METHOD) -> str:
    """`{trait}_vectors.json` for mean_diff (as before), `{trait}_{suffix}_vectors.json` for another method."""
    return _metadata_name(trait, get_method(method).suffix)


def _metadata_name(trait: str, suffix: str) -> str:
    return f"{trait}_vectors.json" if suffix == MEAN_DIFF_SUFFIX else f"{trait}_{suffix}_vectors.json"


def parse_vector_filename(path: str | os.PathLike) -> dict[str, str] | None:
    """`{"trait", "kind", "suffix"}` of a vector file name (None for other names)."""
    match = _FILE_NAME.fullmatch(Path(path).name)
    return match.groupdict() if match else None


def metadata_path(vector_path: str | os.PathLike) -> Path | None:
    """The metadata file beside a `{trait}_{kind}_{suffix}.pt` vector (None for other file names)."""
    parts = parse_vector_filename(vector_path)
    return Path(vector_path).with_name(_metadata_name(parts["trait"], parts["suffix"])) if parts else None


@dataclass
class PersonaVector:
    """A `[num_layers + 1, hidden]` trait direction plus where it came from.

    `meta` keeps every other field of the metadata file (judge, thresholds, counts, sources).
    Arithmetic returns new vectors; combining vectors of different shapes is refused and of
    different models warned about (the result keeps the left operand's metadata).
    """

    tensor: Tensor
    model: str | None = None
    trait: str | None = None
    kind: str | None = None
    judge: Any = None
    layer_convention: str = LAYER_CONVENTION
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.tensor, Tensor) or self.tensor.dim() not in (1, 2):
            raise VectorShapeError(
                f"a persona vector is a [num_layers+1, hidden] tensor, got "
                f"{type(self.tensor).__name__} {tuple(getattr(self.tensor, 'shape', ()))}"
            )

    # --- files ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> PersonaVector:
        """Read a vector file (bare tensor or `{'vector': ...}`) and its metadata file when present."""
        tensor = load_vector(path)
        meta_file = metadata_path(path)
        match = parse_vector_filename(path)
        if meta_file is None or not meta_file.is_file():
            return cls(tensor, trait=match["trait"] if match else None, kind=match["kind"] if match else None)
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            log.warning("ignoring unreadable vector metadata %s: %s", meta_file, err)
            meta = {}
        rest = {k: v for k, v in meta.items() if k not in ("model", "trait", "judge", "layer_convention")}
        assert match is not None  # metadata_path found a match
        return cls(
            tensor,
            model=meta.get("model"),
            trait=meta.get("trait", match["trait"]),
            kind=match["kind"],
            judge=meta.get("judge", meta.get("judge_column")),
            layer_convention=meta.get("layer_convention", LAYER_CONVENTION),
            meta=rest,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the bare tensor and merge this vector's metadata into `<trait>_vectors.json` (atomically)."""
        path = Path(path)
        save_vector(path, self.tensor)
        meta_file = metadata_path(path)
        if meta_file is None:
            meta_file = path.with_suffix(".json")
        existing = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
        files = {**existing.get("files", {}), **({self.kind: path.name} if self.kind else {})}
        write_json(
            meta_file,
            {
                **existing,
                **self.meta,
                "model": self.model,
                "trait": self.trait,
                "judge": self.judge,
                "layer_convention": self.layer_convention,
                "shape": list(self.tensor.shape),
                "files": files,
            },
        )
        return meta_file

    # --- shape and layers ----------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.tensor.shape

    @property
    def num_layers(self) -> int:
        """Decoder blocks of the model this vector fits (rows - 1)."""
        return self.tensor.shape[0] - 1

    def at(self, layer: int) -> Tensor:
        """The `[hidden]` row of `layer` (0 = embeddings, L = output of block L)."""
        if self.tensor.dim() == 1:
            return self.tensor
        if not 0 <= layer <= self.num_layers:
            raise VectorShapeError(f"layer {layer} is out of range: this vector has layers 0..{self.num_layers}")
        return self.tensor[layer]

    def norm(self, layer: int) -> float:
        return float(self.at(layer).norm())

    def cos(self, other: PersonaVector | Tensor, layer: int) -> float:
        """Cosine similarity with `other` at `layer`."""
        b = other.at(layer) if isinstance(other, PersonaVector) else _as_vector(other).at(layer)
        a = self.at(layer)
        if a.shape != b.shape:
            raise VectorShapeError(f"cannot compare vectors of size {tuple(a.shape)} and {tuple(b.shape)}")
        return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=0))

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> PersonaVector:
        return replace(self, tensor=self.tensor.to(device=device, dtype=dtype))

    # --- arithmetic ----------------------------------------------------------------------
    def _combine(self, other: object, op: str) -> PersonaVector:
        if isinstance(other, PersonaVector):
            if other.shape != self.shape:
                raise VectorShapeError(f"cannot {op} vectors of shapes {tuple(self.shape)} and {tuple(other.shape)}")
            if self.model and other.model and self.model != other.model:
                warnings.warn(
                    f"combining vectors of different models ({self.model!r} and {other.model!r})", stacklevel=3
                )
            rhs: Tensor | float = other.tensor
        elif isinstance(other, int | float):
            rhs = float(other)
        else:
            return NotImplemented
        ops: dict[str, Callable[[Tensor, Tensor | float], Tensor]] = {
            "add": lambda a, b: a + b,
            "subtract": lambda a, b: a - b,
            "multiply": lambda a, b: a * b,
            "divide": lambda a, b: a / b,
        }
        return replace(self, tensor=ops[op](self.tensor, rhs), meta=dict(self.meta))

    def __add__(self, other: object) -> PersonaVector:
        if not isinstance(other, PersonaVector):
            return NotImplemented  # adding a number to a direction is almost always a mistake
        return self._combine(other, "add")

    def __sub__(self, other: object) -> PersonaVector:
        if not isinstance(other, PersonaVector):
            return NotImplemented
        return self._combine(other, "subtract")

    def __mul__(self, other: object) -> PersonaVector:
        return self._combine(other, "multiply")

    __rmul__ = __mul__

    def __truediv__(self, other: object) -> PersonaVector:
        return self._combine(other, "divide")

    def __neg__(self) -> PersonaVector:
        return replace(self, tensor=-self.tensor, meta=dict(self.meta))

    # --- steering ------------------------------------------------------------------------
    def steer(self, layer: int, coef: float | Tensor = 1.0, positions: Positions = "response", op: Op = "add") -> Steer:
        """This vector as one `Steer` (add `coef * v[layer]`, or ablate its direction)."""
        return Steer(self, layer=layer, coef=coef, positions=positions, op=op)

    @contextlib.contextmanager
    def apply(
        self,
        model: nn.Module,
        layer: int,
        coef: float | Tensor = 1.0,
        positions: Positions = "response",
        op: Op = "add",
    ) -> Iterator[None]:
        """Steer `model` inside the `with` block; the hooks are removed on exit, whatever happens."""
        with steering(_unwrap(model), [self.steer(layer, coef, positions, op)]):
            yield

    def attach(
        self,
        model: nn.Module,
        layer: int,
        coef: float | Tensor = 1.0,
        positions: Positions = "response",
        op: Op = "add",
    ) -> SteeringHandle:
        """Steer `model` until `handle.remove()` (for notebooks, where a `with` block is awkward)."""
        return SteeringHandle(self.apply(model, layer, coef, positions, op))


class SteeringHandle:
    """An active steering context that lasts until `remove()` (idempotent)."""

    def __init__(self, context: contextlib.AbstractContextManager[None]) -> None:
        self._context: contextlib.AbstractContextManager[None] | None = context
        context.__enter__()

    @property
    def active(self) -> bool:
        return self._context is not None

    def remove(self) -> None:
        if self._context is not None:
            context, self._context = self._context, None
            context.__exit__(None, None, None)


def _unwrap(model: Any) -> nn.Module:
    """Accept a `LoadedModel` as well as the torch model itself."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) and not isinstance(model, nn.Module) else model


def _as_vector(value: PersonaVector | Tensor) -> PersonaVector:
    return value if isinstance(value, PersonaVector) else PersonaVector(value.float())
