"""Argument helpers shared by the command-line entry points."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from persona.defaults import EMBEDDED_MODEL
from persona.errors import InputError

if TYPE_CHECKING:  # the heavy modules load when used, so light CLIs (layout, traits) start fast
    from persona.evaluation import EvalSpec
    from persona.judge.factory import JudgeSettings
    from persona.judge.runner import Judge
    from persona.models import LoadedModel
    from persona.steering import Op, Positions, Steer
    from persona.traits import Trait


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


_FLAGS: set[str] = set()  # the option strings of every parser this process parsed with
_PARAMETER = re.compile(r"`([a-z][a-z0-9_]*)`")


def as_flags(text: str) -> str:
    """The library names parameters in backticks (`overwrite`); a CLI with that flag shows it as `--overwrite`."""
    return _PARAMETER.sub(lambda m: f"--{m[1]}" if f"--{m[1]}" in _FLAGS else m[0], text)


class _FlagNames(logging.Filter):
    """Log lines name the flags of the running CLI, as its error lines do."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = as_flags(record.getMessage()), None
        return True


def setup_logging(verbose: bool = False) -> None:
    """Scripts print summaries; library modules log through `logging` at INFO."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _FlagNames) for f in handler.filters):
            handler.addFilter(_FlagNames())
    for noisy in ("httpx", "httpx2", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_ray_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """`--ray [ADDRESS]`: run `what` on a Ray cluster (None: locally; "": $RAY_ADDRESS or an in-process cluster)."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help=f"run {what} on a Ray cluster, one worker per GPU (per CPU without GPUs): the cluster at ADDRESS, "
        "or without one $RAY_ADDRESS, else a cluster started in this process. Same files as a local run "
        "(see README, 'Several GPUs and nodes')",
    )


def add_model_args(parser: argparse.ArgumentParser, flag: str = "--model") -> None:
    """The model flag (default: the embedded model) plus device/dtype overrides."""
    parser.add_argument(
        flag,
        default=EMBEDDED_MODEL,
        help="Hub id, local dir, LoRA checkpoint or training output dir (default: the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: bf16 on CUDA, fp32 on CPU)")


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    """`--backend` and vLLM's memory fraction, for every command that generates."""
    from persona.vllm_backend import BACKENDS

    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="generation backend: vllm (needs vLLM; steering runs inside it), hf (transformers), "
        "auto (default: vllm when installed for the model's device, else hf)",
    )
    parser.add_argument(
        "--gpu_memory_utilization",
        type=finite_float,
        default=None,
        help="vLLM's memory fraction (default: 0.25 on CPU, 0.6 on CUDA)",
    )


def add_method_args(parser: argparse.ArgumentParser) -> None:
    """The extraction-method flags; `method_options` turns them into `(method, options)`."""
    group = parser.add_argument_group("extraction method")
    group.add_argument(
        "--method",
        default="mean_diff",
        help="mean_diff (default: the original study's mean difference), pca_diff, probe, or a method "
        "registered with persona.extraction_methods.register_method (see --method_module)",
    )
    group.add_argument("--pca_center", action="store_true", help="pca_diff: centre the differences (repeng's variant)")
    group.add_argument(
        "--method_option",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="options of the method (e.g. folds=3 for probe); values are read as JSON, else as text",
    )
    group.add_argument(
        "--method_module", default=None, help="a module to import first that registers more methods (my_pkg.methods)"
    )


def method_options(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """`(method, options)` from the method flags, checked against the method's signature."""
    import importlib
    import json

    from persona.extraction_methods import get_method

    if args.method_module:
        importlib.import_module(args.method_module)
    options: dict[str, Any] = {}
    for item in split_list(args.method_option):
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--method_option {item!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    if args.pca_center:
        if args.method != "pca_diff":
            raise ValueError(f"--pca_center applies to --method pca_diff, not {args.method}")
        options["center"] = True
    get_method(args.method).options(options)  # unknown method or option: one clear line now
    return args.method, options


VERBOSE_FLAG = "--verbose"
VERBOSE_ENV = "PERSONA_VERBOSE"


def _one_line(err: BaseException) -> str:
    """The error's message on one line (pydantic and JSON errors span several)."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


def _os_error_line(err: OSError) -> str:
    """A failed read or write: which file, why, and what to do about it."""
    where = err.filename or "a file"
    if err.errno == errno.ENOSPC:
        return f"no space left on the device writing {where}: free some space and rerun (finished outputs are kept)"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return f"cannot write {where} ({err.strerror}): choose a writable output folder"
    return f"{where}: {err.strerror or _one_line(err)}"


class UsageError(InputError):
    """A usage error (bad flag value), raised instead of printing the usage block and exiting."""


def _usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    raise UsageError(f"{parser.prog}: {message} (see --help)")


def _verbose_requested() -> bool:
    """`--verbose` on the command line (removed, so parsers without it accept the rest) or PERSONA_VERBOSE=1."""
    verbose = os.environ.get(VERBOSE_ENV, "") not in ("", "0")
    if VERBOSE_FLAG in sys.argv[1:]:
        sys.argv = [a for i, a in enumerate(sys.argv) if i == 0 or a != VERBOSE_FLAG]
        verbose = True
    return verbose


def _is_input_error(err: Exception) -> bool:
    """Errors a user fixes by changing an input: the library's `InputError`s (ValueErrors, like the
    built-in ones raised for bad values), a missing file, a bad flag value."""
    return isinstance(err, (ValueError, FileNotFoundError, argparse.ArgumentTypeError))


def _failure_line(err: Exception) -> tuple[str, int]:
    """(the one line to print, the exit status) for a failure that ended a CLI."""
    if isinstance(err, FileNotFoundError) and err.filename:  # raised by the OS: "[Errno 2] ..." otherwise
        return f"{err.filename} does not exist (check the path)", 2
    if _is_input_error(err):
        return as_flags(_one_line(err)), 2
    if isinstance(err, OSError):
        return _os_error_line(err), 2
    return f"{type(err).__name__}: {_one_line(err)} (rerun with {VERBOSE_FLAG} for the traceback)", 1


def error_line(err: Exception) -> str:
    """The one line a failure is reported with: a CLI's stderr line, the explorer's status box."""
    return _failure_line(err)[0]


def _coherence_prompt_file(path: str) -> str:
    """`--coherence_prompt`'s type: the template is read and checked as the flags are parsed, before any work."""
    from persona.judge.factory import load_coherence_prompt

    try:
        load_coherence_prompt(path)
    except (OSError, ValueError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return path


def add_judge_args(parser: argparse.ArgumentParser) -> None:
    """The judge flags every scoring CLI shares; `judge_settings` turns them into `JudgeSettings`."""
    from persona.judge.aggregate import EVAL_TYPES
    from persona.judge.factory import DEFAULT_OPENAI_JUDGE
    from persona.judge.openai_judge import NUMBER_TOKENS

    group = parser.add_argument_group("judge")
    group.add_argument(
        "--judge_model",
        default=None,
        help=f"judge: an OpenAI model name, 'likelihood', 'likelihood:<model>' or 'local:<model>' "
        f"(default: {DEFAULT_OPENAI_JUDGE} when OPENAI_API_KEY is set, else likelihood)",
    )
    group.add_argument(
        "--judge_base_url",
        default=None,
        help="OpenAI-compatible server for the judge, e.g. http://gpu-box:8000/v1 (vLLM)",
    )
    group.add_argument(
        "--max_concurrent_judges",
        type=int,
        default=100,
        help="judge requests in flight at once (default 100, as the original)",
    )
    group.add_argument("--no_judge_cache", action="store_true", help="ignore and do not fill the judge cache")
    group.add_argument(
        "--judge_eval_type",
        default="0_100",
        choices=EVAL_TYPES,
        help="judge answer format (LLM judges; the likelihood judge ignores it)",
    )
    group.add_argument(
        "--judge_number_tokens",
        default="auto",
        choices=NUMBER_TOKENS,
        help="does the judge server's tokenizer keep numbers whole or split them into digits? "
        "(auto: probe the server once; split: judge on the 0_10 scale)",
    )
    group.add_argument(
        "--judge_prefill",
        default="",
        help="text the local judge's answer starts with, e.g. 'Score: ' (local:<model> only)",
    )
    group.add_argument(
        "--coherence_prompt",
        type=_coherence_prompt_file,
        default=None,
        metavar="FILE",
        help="coherence judge template with {question} and {answer} (e.g. the original study's); "
        "default: the built-in one. The trait's template is its file's eval_prompt. "
        "The likelihood proxy uses no prompt",
    )


def judge_settings(args: argparse.Namespace) -> JudgeSettings:
    """The `add_judge_args` flags of parsed `args` (the fields are named after the flags)."""
    from persona.judge.factory import JudgeSettings

    return JudgeSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(JudgeSettings)})


def judges_from_args(
    args: argparse.Namespace, *, trait: Trait, eval_model: LoadedModel | None = None
) -> dict[str, Judge]:
    """{trait judge column: judge, "coherence": judge} from the judge flags."""
    from persona.judge.factory import make_judges

    return make_judges(judge_settings(args), trait=trait, eval_model=eval_model)


def add_seed_args(parser: argparse.ArgumentParser) -> None:
    """`--seed` (one sampling seed) and `--seeds` (several: one CSV with a `seed` column)."""
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (per-row, batch-independent)")
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="run every cell under each of these sampling seeds into one CSV with a seed column "
        "(replaces --seed; the summary treats seed as nested inside question)",
    )


def seeds_from_args(args: argparse.Namespace) -> tuple[int, ...]:
    return tuple(dict.fromkeys(args.seeds)) if args.seeds else (args.seed,)


def eval_spec_from_args(args: argparse.Namespace, **overrides: Any) -> EvalSpec:
    """The `EvalSpec` of parsed eval_persona-style flags (`overrides` replace any field); judge resolved."""
    from persona.evaluation import EvalSpec

    values = {
        "model": args.model,
        "trait": args.trait,
        "version": args.version,
        "n_per_question": args.n_per_question,
        "max_questions": args.max_questions,
        "instruction_type": args.persona_instruction_type,
        "assistant_name": args.assistant_name,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": getattr(args, "top_p", 1.0),  # eval.grid has no sampling flags beyond temperature
        "top_k": getattr(args, "top_k", 0),
        "min_new_tokens": getattr(args, "min_new_tokens", 1),
        "seeds": seeds_from_args(args) if hasattr(args, "seeds") else (args.seed,),
        "batch_size": args.batch_size,
        "backend": args.backend,
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "device": args.device,
        "dtype": args.dtype,
        "judge": judge_settings(args),
    }
    values.update(overrides)
    return EvalSpec(**values).resolve_judge()


def traits_main(argv: Sequence[str] | None = None) -> int:
    """`python -m persona.traits --check DATA_DIR`: validate a trait library (exit 1 on problems)."""
    from persona.traits import check_library, format_table

    parser = argparse.ArgumentParser(
        prog="python -m persona.traits", description="Validate a trait library or show one artifact."
    )
    parser.add_argument(
        "--check",
        metavar="DATA_DIR",
        type=Path,
        help="validate every artifact and definition under DATA_DIR (e.g. data_generation)",
    )
    args = parser.parse_args(argv)
    if args.check is None:
        parser.error("nothing to do: pass --check DATA_DIR")
    if not args.check.is_dir():
        raise FileNotFoundError(f"{args.check} is not a directory: pass the folder holding trait_data_extract/")
    reports, general = check_library(args.check)
    print(format_table(reports))
    problems = general + [p for r in reports for p in r.problems]
    bases = sum(r.name == r.judge_column for r in reports)
    print(f"\n{len(reports)} artifacts ({bases} base traits, {len(reports) - bases} variants) in {args.check}")
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print("all artifacts valid")
    return 0


def layout_main(argv: Sequence[str] | None = None) -> int:
    """`python -m persona.layout MODEL`: the output folders of a model as shell assignments, for the pipelines."""
    from persona.layout import OUTPUT_ROOT, Layout, num_layers, shell_assignments

    parser = argparse.ArgumentParser(
        prog="python -m persona.layout",
        description="Print the output folders of a model as shell assignments "
        "(MODEL_NAME, EXTRACT_DIR, VECTOR_DIR, EVAL_DIR; PROJECTION_DIR "
        "with --trait).",
    )
    parser.add_argument("model", help="model spec: Hub id, local folder, checkpoint or smollm2-135m")
    parser.add_argument("--root", default=OUTPUT_ROOT, help="output root (default: output)")
    parser.add_argument("--trait", default=None, help="finetuned trait whose checkpoint evaluations to locate")
    parser.add_argument(
        "--num_layers", action="store_true", help="print the model's decoder layer count instead (read from its config)"
    )
    args = parser.parse_args(argv)
    try:
        layout = Layout(args.model, args.root)
        print(num_layers(args.model) if args.num_layers else shell_assignments(layout, args.trait))
    except (OSError, ValueError) as err:
        raise ValueError(f"{args.model}: {err}") from err
    return 0


@contextlib.contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    """argparse prints its usage block before a usage error; under `run_cli` it is one line like any error.

    Every parser's option strings are remembered, so messages can name flags (`as_flags`).
    """
    original_error, original_parse = argparse.ArgumentParser.error, argparse.ArgumentParser.parse_known_args

    def parse_known_args(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        _FLAGS.update(option for option in self._option_string_actions if option.startswith("--"))
        for action in self._actions:  # subcommands' own flags
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    _FLAGS.update(option for option in sub._option_string_actions if option.startswith("--"))
        return original_parse(self, *args, **kwargs)

    argparse.ArgumentParser.error = _usage_error  # type: ignore[method-assign,assignment]
    argparse.ArgumentParser.parse_known_args = parse_known_args  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original_error  # type: ignore[method-assign]
        argparse.ArgumentParser.parse_known_args = original_parse  # type: ignore[method-assign]


def run_cli(main: Callable[[], int]) -> None:
    """Run a CLI `main` so that no failure ends in a traceback unless asked for.

    Input errors (bad file, vector, layer, trait, config, model, missing key, usage) end in
    one line naming the input and the fix, exit 2; an unwritable folder or a full disk,
    one line, exit 2; anything else, one line, exit 1; Ctrl-C, exit 130. `--verbose` (or
    PERSONA_VERBOSE=1) shows debug logs and the traceback instead.
    """
    if _verbose_requested():
        setup_logging(verbose=True)
        raise SystemExit(main())
    try:
        with _one_line_usage_errors():
            code = main()
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume (finished outputs are kept)", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as err:  # the one place any failure becomes a line
        line, status = _failure_line(err)
        print(f"error: {line}", file=sys.stderr)
        raise SystemExit(status) from None
    raise SystemExit(code)
