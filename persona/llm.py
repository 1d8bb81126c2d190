"""The one place that talks to OpenAI-compatible chat endpoints: client, retries, JSON answers.

Every LLM-calling feature (trait generation, judges, dataset generators) should build its
client with `make_async_client` and wrap each request in `with_retries`, so key handling,
backoff and the notion of "worth retrying" are the same everywhere:

    client = make_async_client(base_url, timeout=60, purpose="judging answers")
    reply = await with_retries(lambda: client.chat.completions.create(...), max_retries=4, base_delay=2)

The client's own retry loop is off (`max_retries=0`) so that ours is the only one. API
keys are read through `persona.settings` and never logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlparse

import openai

from persona import settings

T = TypeVar("T")
log = logging.getLogger(__name__)

OPENAI_HOST = "api.openai.com"
PLACEHOLDER_KEY = "unused-by-local-server"  # the client insists on some key; local servers ignore it
_RETRYABLE_STATUS = frozenset({408, 409, 429})

_FENCE = re.compile(r"\A```[A-Za-z0-9_-]*\s*(.*?)\s*```\Z", re.S)


class InvalidAnswerError(ValueError):
    """The model answered, but the answer is unusable (not JSON, wrong shape); asking again may help."""


class NoValidAnswer(RuntimeError):
    """`ask_json` gave up: every attempt failed; `attempts` and the last `error` say how."""

    def __init__(self, model: str, attempts: int, error: BaseException) -> None:
        super().__init__(
            f"{model} gave no valid reply after {attempts} attempt(s) (last problem: {type(error).__name__}: {error})"
        )
        self.attempts = attempts
        self.error = error


def make_async_client(base_url: str | None, *, timeout: float, purpose: str) -> openai.AsyncOpenAI:
    """An async client for `base_url` (default: $OPENAI_BASE_URL, else OpenAI) with retries left to us.

    OpenAI itself needs OPENAI_API_KEY, and a missing key is a one-line
    `MissingSettingError` naming `purpose`; a custom endpoint (vLLM, a local server) gets
    the key when one is set and a placeholder otherwise.
    """
    base_url = base_url or settings.get("OPENAI_BASE_URL")
    if base_url is None or urlparse(base_url).hostname == OPENAI_HOST:
        key = settings.require("OPENAI_API_KEY", purpose)
    else:
        key = settings.get("OPENAI_API_KEY") or PLACEHOLDER_KEY
        warn_if_plain_http(base_url)
    return openai.AsyncOpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)


def _is_loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return host is not None
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


@functools.cache
def warn_if_plain_http(base_url: str) -> None:
    """Warn (once per URL) when a server is plain http to another machine: OPENAI_API_KEY, when set,
    is sent to every base URL, and over http it and every prompt travel unencrypted."""
    url = urlparse(base_url)
    if url.scheme == "http" and not _is_loopback(url.hostname):
        log.warning(
            "%s is plain http to another machine: OPENAI_API_KEY (when set) and every prompt and answer "
            "travel unencrypted; use https, a loopback address or an SSH tunnel",
            base_url,
        )


def is_retryable(exc: BaseException) -> bool:
    """Whether asking again may succeed: connection errors and timeouts, 408, 409, 429, 5xx, unusable answers.

    The statuses are the ones the openai client itself retries (request timeout, lock
    conflict, rate limit, server error); other 4xx (bad request, auth, unknown model) fail
    the same way every time.
    """
    if isinstance(exc, (openai.APIConnectionError, InvalidAnswerError)):  # APITimeoutError included
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRYABLE_STATUS or exc.status_code >= 500
    return False


def run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, also inside a running event loop (Jupyter).

    With a loop already running in this thread, `asyncio.run` refuses; the coroutine then runs
    on a fresh loop in a worker thread while this call waits for it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    max_retries: int,
    base_delay: float,
    is_valid: Callable[[T], bool] | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """`await call()` up to `max_retries` times in all; the first result that passes `is_valid`.

    A retryable failure (see `is_retryable`; a result rejected by `is_valid` counts as an
    `InvalidAnswerError`) waits `base_delay * 2 ** (attempt - 1)` seconds, after calling
    `on_retry(attempt, error, delay)`, e.g. to log it. Anything else, or the failure of
    the last attempt, is raised as is.
    """
    if max_retries < 1:
        raise ValueError(f"max_retries must be >= 1, got {max_retries}")
    attempt = 1
    while True:
        try:
            result = await call()
            if is_valid is not None and not is_valid(result):
                raise InvalidAnswerError(f"answer rejected by {getattr(is_valid, '__name__', 'is_valid')}")
            return result
        except Exception as exc:
            if attempt == max_retries or not is_retryable(exc):
                raise
            delay = base_delay * 2 ** (attempt - 1)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
        await asyncio.sleep(delay)
        attempt += 1


async def ask_json(
    client: openai.AsyncOpenAI,
    model: str,
    messages: list[Any],
    validate: Callable[[dict[str, Any]], T],
    *,
    max_retries: int,
    base_delay: float,
    gate: asyncio.Semaphore | None = None,
    json_mode: bool = False,
    temperature: float | None = None,
    label: str = "request",
) -> tuple[T, int]:
    """Ask for a JSON object, validate it, retry: `(validate(answer), attempts)`.

    Invalid answers (`validate` raises `InvalidAnswerError`) and transient API errors are
    retried with backoff (logged with `label`); `gate` bounds requests in flight and is held
    per request, not while backing off. The final failure raises `NoValidAnswer`.
    """
    attempts = 0
    extra: dict[str, Any] = {}
    if json_mode:
        extra["response_format"] = {"type": "json_object"}
    if temperature is not None:
        extra["temperature"] = temperature

    async def ask() -> T:
        nonlocal attempts
        attempts += 1
        async with gate or contextlib.nullcontext():
            reply = await client.chat.completions.create(model=model, messages=messages, **extra)
        return validate(parse_json_answer(reply.choices[0].message.content))

    def on_retry(attempt: int, error: BaseException, delay: float) -> None:
        log.warning(
            "%s: attempt %d/%d failed (%s: %s); retrying in %.3gs",
            label,
            attempt,
            max_retries,
            type(error).__name__,
            str(error)[:200],
            delay,
        )

    try:
        return await with_retries(ask, max_retries=max_retries, base_delay=base_delay, on_retry=on_retry), attempts
    except (InvalidAnswerError, openai.APIError) as err:
        raise NoValidAnswer(model, attempts, err) from err


def parse_json_answer(text: str | None) -> dict[str, Any]:
    """The JSON object in a model answer; tolerates a ```json fence or prose around it ("Sure! {...}").

    Raises `InvalidAnswerError` (retryable) when the answer is empty, not JSON or not an object.
    """
    if not text or not text.strip():
        raise InvalidAnswerError("empty answer")
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced[1]
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        embedded = re.search(r"\{.*\}", body, flags=re.DOTALL)
        try:
            data = json.loads(embedded.group(0)) if embedded else None
        except json.JSONDecodeError:
            data = None
        if data is None:
            raise InvalidAnswerError(f"answer is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise InvalidAnswerError(f"answer is JSON {type(data).__name__}, expected an object")
    return data
