"""How a command ends: one line per failure (library parameters shown as its flags), exit codes, logging."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from persona.errors import InputError

if TYPE_CHECKING:  # the heavy modules load when used, so light CLIs (layout, traits) start fast
    pass


_FLAGS: set[str] = set()  # the option strings of every parser this process parsed with


_PARAMETER = re.compile(r"`([a-z][a-z0-9_]*)`")


def as_flags(text: str) -> str:
    """The library names parameters in backticks (`overwrite`); a CLI with that flag shows it as `--overwrite`."""
    return _PARAMETER.sub(lambda m: f"--{m[1]}" if f"--{m[1]}" in _FLAGS else m[0], text)


LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class _FlagFormatter(logging.Formatter):
    """Log lines name the flags of the running CLI, as its error lines do (only on the CLI's own handler)."""

    def format(self, record: logging.LogRecord) -> str:
        return as_flags(super().format(record))


def setup_logging(verbose: bool = False) -> None:
    """Scripts print summaries; library modules log through `logging` at INFO."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:  # the handler basicConfig made (not a test's capture handler)
        formatter = handler.formatter
        if formatter is not None and formatter._fmt == LOG_FORMAT and not isinstance(formatter, _FlagFormatter):
            handler.setFormatter(_FlagFormatter(LOG_FORMAT))
    for noisy in ("httpx", "httpx2", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
