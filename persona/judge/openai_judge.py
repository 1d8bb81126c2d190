"""LLM judge over the OpenAI chat API or any OpenAI-compatible server (vLLM, SGLang, ...).

The paper's method: one user message, `max_tokens=1, temperature=0, logprobs=True,
top_logprobs=20, seed=0`, and the score aggregated from the top-20 token table
(`persona.judge.aggregate`). `binary_text` instead generates a verdict and parses it.

Digit-split tokenizers: many open models write "85" as "8", "5", so a one-token read
returns the first digit. With a `base_url` the judge asks the server once to "reply with
the number 73" and looks at the first token's top logprobs: a multi-digit token means
whole-number tokens; lone digits mean split. For a split tokenizer the `0_100` scale is
replaced by the `0_10` scale (a single digit 0-9, one token everywhere, scaled to 0-100).
If the probe is inconclusive the judge also uses `0_10` (correct for either tokenizer).
`number_tokens="whole"|"split"` declares it instead; the official API is known "whole".

Client, key handling and retries are `persona.llm`'s: outages (408, 409, 429, 5xx, timeouts,
connection errors) are retried with exponential backoff and then give `None` (counted in
`failures`); another rejected request gives `None` at once; a wrong key, model or URL
(401/403/404) or a server without logprobs raises `JudgeConfigError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import openai
from openai.types.chat import ChatCompletion

from persona import llm
from persona.errors import InputError
from persona.judge.aggregate import aggregate, aggregate_text, number_tokenization, token_probs
from persona.judge.cache import open_cache
from persona.judge.prompts import fill
from persona.judge.runner import BaseJudge

log = logging.getLogger(__name__)

NUMBER_TOKENS = ("auto", "whole", "split")
PROBE_PROMPT = "Reply with the number 73 and nothing else."
T = TypeVar("T")
_LOGPROB_ARGS = dict(max_tokens=1, temperature=0, logprobs=True, top_logprobs=20, seed=0)


class JudgeConfigError(InputError):
    """The judge endpoint rejects the setup itself (key, model, URL, no logprobs): fix and rerun."""


class JudgeUnavailable(Exception):
    """One judgment could not be obtained (outage after retries, or a rejected request)."""


class OpenAIJudge(BaseJudge):
    """Async judge over the chat completions API; `template(eval_type)` gives the prompt template.

    The key comes from OPENAI_API_KEY via `llm.make_async_client`, checked here so that a
    missing key fails before any answer is generated. `max_retries` counts retries after
    the first request.
    """

    def __init__(
        self,
        model: str,
        template: Callable[[str], str],
        *,
        eval_type: str = "0_100",
        base_url: str | None = None,
        use_cache: bool = True,
        number_tokens: str = "auto",
        timeout: float = 60.0,
        max_retries: int = 5,
        base_delay: float = 1.0,
    ) -> None:
        if number_tokens not in NUMBER_TOKENS:
            raise ValueError(f"number_tokens must be one of {list(NUMBER_TOKENS)}, got {number_tokens!r}")
        self.model = model
        self.template = template
        self.eval_type = eval_type
        self.base_url = base_url
        self.backend = "openai" if base_url is None else "openai-compatible"
        self.number_tokens = number_tokens if base_url is not None or number_tokens != "auto" else "whole"
        self.cache = open_cache(use_cache)
        self.timeout, self.max_retries, self.base_delay = timeout, max_retries, base_delay
        self._client: openai.AsyncOpenAI | None = self._connect()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop `_client` is in use on
        self._probe_lock: asyncio.Lock | None = None
        self._effective_type: str | None = None
        self.failures = 0

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIJudge(model={self.model!r}, base_url={self.base_url!r}, eval_type={self.eval_type!r})"

    # ------------------------------------------------------------------ transport

    def _connect(self) -> openai.AsyncOpenAI:
        return llm.make_async_client(self.base_url, timeout=self.timeout, purpose=f"judge {self.model!r}")

    def _session(self) -> tuple[openai.AsyncOpenAI, asyncio.Lock]:
        """One client (and probe lock) per event loop: an httpx pool must not outlive its loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._client is None or self._probe_lock is None:
            if self._client is None or self._loop is not None:  # closed, or bound to another loop
                self._client = self._connect()
            self._probe_lock = asyncio.Lock()
            self._loop = loop
        return self._client, self._probe_lock

    async def aclose(self) -> None:
        """Close the client as its event loop ends (`score_all` does); the next loop gets a new one."""
        if self._client is not None:
            await self._client.close()
        self._client = self._loop = self._probe_lock = None

    async def _create(self, content: str, read: Callable[[ChatCompletion], T], **kwargs: Any) -> T:
        """One chat completion, `read` through `llm.with_retries`; failures become the judge's two errors.

        A reply that is not JSON, or that `read` finds unusable (it raises `llm.InvalidAnswerError`),
        is retried like an outage. `JudgeConfigError` when the endpoint rejects the setup (no
        point asking again), `JudgeUnavailable` for a failure that outlasted the retries or
        another rejected request.
        """
        client, _ = self._session()

        def on_retry(attempt: int, error: BaseException, delay: float) -> None:
            log.debug("judge call failed (%s); retry %d/%d in %.2fs", _reason(error), attempt, self.max_retries, delay)

        async def call() -> T:
            try:
                completion = await client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": content}], **kwargs
                )
            except json.JSONDecodeError:
                raise llm.InvalidAnswerError("the reply is not JSON") from None
            return read(completion)

        try:
            return await llm.with_retries(
                call, max_retries=self.max_retries + 1, base_delay=self.base_delay, on_retry=on_retry
            )
        except llm.InvalidAnswerError as e:
            raise JudgeUnavailable(f"{e} after {self.max_retries} retries") from None
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
            raise JudgeConfigError(
                f"the judge endpoint ({self.base_url or 'OpenAI API'}) rejected model {self.model!r} with "
                f"HTTP {e.status_code} ({type(e).__name__}): check `judge_model`, `judge_base_url` and "
                "OPENAI_API_KEY"
            ) from None
        except (openai.APIStatusError, openai.APIConnectionError) as e:
            after = f" after {self.max_retries} retries" if llm.is_retryable(e) else ""
            raise JudgeUnavailable(_reason(e) + after) from None

    async def _top_probs(self, content: str) -> dict[str, float]:
        return await self._create(content, self._read_top_probs, **_LOGPROB_ARGS)

    def _read_top_probs(self, completion: ChatCompletion) -> dict[str, float]:
        """The first token's top-logprob table; empty or garbled logprobs are an unusable reply (retried)."""
        logprobs = completion.choices[0].logprobs if completion.choices else None
        if logprobs is None:
            raise JudgeConfigError(
                f"the judge endpoint returned no logprobs for model {self.model!r}; "
                "it must support `logprobs` and `top_logprobs` (or use `judge_eval_type` "
                "binary_text)"
            )
        if not logprobs.content:
            raise llm.InvalidAnswerError("the reply has an empty logprobs list")
        try:
            return token_probs((t.token, float(t.logprob)) for t in logprobs.content[0].top_logprobs)
        except (TypeError, ValueError, AttributeError) as e:
            raise llm.InvalidAnswerError(f"the reply has malformed logprobs ({type(e).__name__})") from None

    # ------------------------------------------------------------------ digit-split handling

    async def probe_number_tokens(self) -> str | None:
        """ "whole" or "split" from one probe request (cached on disk), None if inconclusive."""
        key = ("probe", self.model, PROBE_PROMPT)
        hit, mode = self.cache.get(*key, server=self.base_url)
        if not hit:
            mode = number_tokenization(await self._top_probs(PROBE_PROMPT))
            if mode is not None:
                self.cache.put(*key, mode, server=self.base_url)
        return mode

    async def effective_eval_type(self) -> str:
        """The eval type actually asked for: 0_100 becomes 0_10 for digit-split tokenizers."""
        if self._effective_type is None:
            _, probe_lock = self._session()
            async with probe_lock:
                if self._effective_type is None:
                    self._effective_type = await self._resolve_eval_type()
        return self._effective_type

    async def _resolve_eval_type(self) -> str:
        if self.eval_type != "0_100" or self.number_tokens == "whole":
            return self.eval_type
        mode: str | None = self.number_tokens
        if mode == "auto":
            try:
                mode = await self.probe_number_tokens()
            except JudgeUnavailable as e:
                log.warning("number-tokenization probe of %s failed (%s)", self.model, e)
                mode = None
            if mode is None:
                log.warning(
                    "could not tell whether %s tokenizes numbers whole; scoring on the 0_10 scale, "
                    "which is right either way (declare `judge_number_tokens` whole|split to choose)",
                    self.model,
                )
                return "0_10"
        if mode == "split":
            log.warning(
                "%s splits numbers into digits: judging on the 0_10 scale (one digit, scaled to 0-100)", self.model
            )
            return "0_10"
        return "0_100"

    # ------------------------------------------------------------------ judging

    async def __call__(self, *, question: str, answer: str) -> float | None:
        eval_type = await self.effective_eval_type()
        prompt = fill(self.template(eval_type), question, answer)
        backend = f"{self.backend}/{eval_type}"
        hit, score = self.cache.get(backend, self.model, prompt, server=self.base_url)
        if hit:
            return score
        try:
            if eval_type == "binary_text":
                text = await self._create(prompt, _reply_text, temperature=0, seed=0)
                score = aggregate_text(text)
            else:
                score = aggregate(await self._top_probs(prompt), eval_type)
        except JudgeUnavailable as e:
            self.failures += 1
            log.debug("judgment failed: %s", e)
            return None
        self.cache.put(backend, self.model, prompt, score, server=self.base_url)
        return score


def _reply_text(completion: ChatCompletion) -> str:
    return (completion.choices[0].message.content if completion.choices else "") or ""


def _reason(error: BaseException) -> str:
    """A short, key-free description of a failed call for logs and `JudgeUnavailable`."""
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code} ({type(error).__name__})"
    return type(error).__name__
