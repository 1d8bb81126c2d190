"""persona.llm: retry/backoff, which errors are worth retrying, JSON answers, client keys."""

from __future__ import annotations

import asyncio

import httpx2
import openai
import pytest

from persona import llm, settings

REQUEST = httpx2.Request("POST", "http://127.0.0.1:1/v1/chat/completions")


def status_error(cls: type[openai.APIStatusError], code: int) -> openai.APIStatusError:
    """A real openai status error, built the way the client builds it from a response."""
    return cls(f"HTTP {code}", response=httpx2.Response(code, request=REQUEST), body=None)


class Scripted:
    """An async callable that raises or returns the scripted items in order, counting calls."""

    def __init__(self, *items: object):
        self.items = list(items)
        self.calls = 0

    async def __call__(self) -> object:
        item = self.items[self.calls]
        self.calls += 1
        if isinstance(item, BaseException):
            raise item
        return item


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Backoff delays asked for, without waiting."""
    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(llm.asyncio, "sleep", fake_sleep)
    return delays


def retry(call: Scripted, **kwargs) -> object:
    kwargs = {"max_retries": 4, "base_delay": 1.0} | kwargs
    return asyncio.run(llm.with_retries(call, **kwargs))


# ---------------------------------------------------------------- retries


def test_retries_with_doubling_delay_until_success(sleeps):
    seen = []
    call = Scripted(
        openai.APIConnectionError(request=REQUEST),
        status_error(openai.RateLimitError, 429),
        status_error(openai.InternalServerError, 503),
        "ok",
    )
    result = retry(call, on_retry=lambda attempt, error, delay: seen.append((attempt, type(error), delay)))
    assert result == "ok" and call.calls == 4
    assert sleeps == [1.0, 2.0, 4.0]
    assert seen == [
        (1, openai.APIConnectionError, 1.0),
        (2, openai.RateLimitError, 2.0),
        (3, openai.InternalServerError, 4.0),
    ]


def test_gives_up_after_max_retries_attempts_with_the_last_error(sleeps):
    errors = [status_error(openai.InternalServerError, 500 + i) for i in range(5)]
    call = Scripted(*errors)
    with pytest.raises(openai.InternalServerError) as info:
        retry(call, max_retries=3, base_delay=0.5)
    assert info.value is errors[2] and call.calls == 3
    assert sleeps == [0.5, 1.0]  # no wait after the last attempt


@pytest.mark.parametrize(
    "error",
    [
        status_error(openai.BadRequestError, 400),
        status_error(openai.AuthenticationError, 401),
        status_error(openai.NotFoundError, 404),
        KeyError("a bug, not a flaky server"),
    ],
)
def test_non_retryable_errors_fail_at_once(sleeps, error):
    call = Scripted(error, "never reached")
    with pytest.raises(type(error)) as info:
        retry(call, on_retry=lambda *a: pytest.fail("on_retry called for a non-retryable error"))
    assert info.value is error and call.calls == 1 and sleeps == []


def test_invalid_answers_are_retried_then_reported(sleeps):
    def has_text(reply: str) -> bool:
        return bool(reply.strip())

    assert retry(Scripted(" ", "", "fine"), is_valid=has_text) == "fine"
    assert sleeps == [1.0, 2.0]
    with pytest.raises(llm.InvalidAnswerError, match="rejected by has_text"):
        retry(Scripted("", "", ""), max_retries=3, is_valid=has_text)
    bad_json = Scripted(llm.InvalidAnswerError("answer is not valid JSON"), {"a": 1})
    assert retry(bad_json) == {"a": 1} and bad_json.calls == 2


def test_request_timeout_and_conflict_are_retried(sleeps):
    call = Scripted(status_error(openai.APIStatusError, 408), status_error(openai.ConflictError, 409), "ok")
    assert retry(call) == "ok" and call.calls == 3 and sleeps == [1.0, 2.0]


def test_zero_delay_really_runs():
    call = Scripted(openai.APITimeoutError(REQUEST), "ok")
    assert asyncio.run(llm.with_retries(call, max_retries=2, base_delay=0)) == "ok" and call.calls == 2


def test_max_retries_must_allow_one_attempt():
    with pytest.raises(ValueError, match="max_retries must be >= 1"):
        retry(Scripted("ok"), max_retries=0)


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize(
    "error,expected",
    [
        (openai.APIConnectionError(request=REQUEST), True),
        (openai.APITimeoutError(REQUEST), True),
        (status_error(openai.APIStatusError, 408), True),
        (status_error(openai.ConflictError, 409), True),
        (status_error(openai.RateLimitError, 429), True),
        (status_error(openai.InternalServerError, 500), True),
        (status_error(openai.InternalServerError, 529), True),
        (status_error(openai.APIStatusError, 502), True),
        (llm.InvalidAnswerError("empty answer"), True),
        (status_error(openai.BadRequestError, 400), False),
        (status_error(openai.AuthenticationError, 401), False),
        (status_error(openai.PermissionDeniedError, 403), False),
        (status_error(openai.NotFoundError, 404), False),
        (status_error(openai.UnprocessableEntityError, 422), False),
        (ValueError("not an API error"), False),
    ],
)
def test_is_retryable(error, expected):
    assert llm.is_retryable(error) is expected


# ---------------------------------------------------------------- JSON answers


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '  {"a": 1}\n',
        '```json\n{"a": 1}\n```',
        '```\n{"a": 1}\n```',
        '```json {"a": 1} ```',
        '\n```JSON\n{"a": 1}\n```\n',
        'Sure! {"a": 1} Hope this helps.',
    ],
)
def test_parse_json_answer_accepts_plain_and_fenced(text):
    assert llm.parse_json_answer(text) == {"a": 1}


@pytest.mark.parametrize(
    "text,message",
    [
        (None, "empty answer"),
        ("  \n", "empty answer"),
        ("[1, 2]", "answer is JSON list, expected an object"),
        ("Sure! Here it is: {", "answer is not valid JSON"),
        ('```json\n{"a": 1,}\n```', "answer is not valid JSON"),
    ],
)
def test_parse_json_answer_rejects(text, message):
    with pytest.raises(llm.InvalidAnswerError, match=message):
        llm.parse_json_answer(text)


# ---------------------------------------------------------------- clients


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No key or base URL from the environment or a .env file."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PERSONA_DOTENV", str(tmp_path / "absent.env"))
    return monkeypatch


@pytest.mark.parametrize("base_url", [None, "https://api.openai.com/v1"])
def test_openai_without_key_is_a_one_line_error(env, base_url):
    with pytest.raises(settings.MissingSettingError) as info:
        llm.make_async_client(base_url, timeout=5, purpose="judging answers")
    message = str(info.value)
    assert "\n" not in message and "OPENAI_API_KEY is not set" in message and "judging answers" in message


def test_custom_endpoint_needs_no_key(env):
    client = llm.make_async_client("http://127.0.0.1:8000/v1", timeout=7.5, purpose="x")
    assert client.api_key == llm.PLACEHOLDER_KEY and str(client.base_url) == "http://127.0.0.1:8000/v1/"
    assert client.max_retries == 0 and client.timeout == 7.5


def test_key_and_base_url_come_from_settings(env):
    env.setenv("OPENAI_API_KEY", "sk-test-secret")
    client = llm.make_async_client(None, timeout=5, purpose="x")
    assert client.api_key == "sk-test-secret" and client.base_url.host == "api.openai.com"
    assert client.max_retries == 0
    env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    local = llm.make_async_client(None, timeout=5, purpose="x")
    assert local.api_key == "sk-test-secret" and str(local.base_url) == "http://127.0.0.1:9/v1/"
    assert str(llm.make_async_client("http://10.0.0.1/v1", timeout=5, purpose="x").base_url) == "http://10.0.0.1/v1/"
