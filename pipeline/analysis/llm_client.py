"""Sends ``pipeline.analysis.llm``'s prompt to an OpenAI-compatible endpoint and degrades politely.

The transport is the official ``openai`` SDK pointed at ``LLM_BASE_URL`` (it speaks the
chat-completions API of OpenAI, vLLM, Ollama, LM Studio, llama.cpp's server and others), with
no retries of its own and a timeout of ``LLM_TIMEOUT_S``. A failure never stalls the sentiment
stage: ``LlmScorer.score`` raises ``LlmUnavailableError`` (timeout, refusal over HTTP, no
connection) or ``LlmAnswerError`` (a refusal, malformed JSON) with a one-line reason that never
holds the key, and after a failure the endpoint is left alone for ``cooldown_s`` (the caller
uses the lexicon meanwhile, and says so). Called from the sentiment stage's thread only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from pipeline.analysis.llm import (
    LlmAnswerError,
    LlmItem,
    LlmUnavailableError,
    PromptItem,
    build_messages,
    parse_answer,
)

log = logging.getLogger(__name__)


class LlmScorer:
    """One endpoint and model. ``score`` sends one request for up to ``MAX_ITEMS`` items."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        *,
        timeout_s: float = 10.0,
        cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from openai import OpenAI

        self.model = model
        self.cooldown_s = cooldown_s
        self.clock = clock
        # A local server needs no key, but the SDK insists on one: a placeholder that is no secret.
        self._client = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=0)
        self._timeout_s = timeout_s
        self._failed_at: float | None = None
        self.last_error: str | None = None
        self.requests = 0
        self.failures = 0

    @property
    def version(self) -> str:
        return f"llm:{self.model}"

    def resting(self) -> float:
        """Seconds left before the endpoint is asked again after a failure (0 when it may be)."""
        if self._failed_at is None:
            return 0.0
        return max(0.0, self.cooldown_s - (self.clock() - self._failed_at))

    def _fail(self, reason: str) -> str:
        self._failed_at = self.clock()
        self.failures += 1
        self.last_error = reason
        log.warning("LLM sentiment unavailable: %s", reason)
        return reason

    def score(self, symbol: str, aliases: Sequence[str], items: Sequence[PromptItem]) -> list[LlmItem]:
        """Ask for the items' sentiment; raise ``LlmUnavailableError`` or ``LlmAnswerError``."""
        import openai

        left = self.resting()
        if left > 0:
            raise LlmUnavailableError(f"resting {left:.0f} s after: {self.last_error}")
        self.requests += 1
        try:
            answer = self._client.chat.completions.create(  # type: ignore[call-overload]
                model=self.model,
                messages=build_messages(symbol, aliases, items),
                temperature=0,
                response_format={"type": "json_object"},
            )
        except openai.APITimeoutError:
            raise LlmUnavailableError(self._fail(f"no answer within {self._timeout_s:g} s")) from None
        except openai.APIStatusError as exc:
            raise LlmUnavailableError(self._fail(f"the endpoint answered HTTP {exc.status_code}")) from None
        except openai.APIConnectionError:
            raise LlmUnavailableError(self._fail("the endpoint cannot be reached")) from None
        except openai.OpenAIError as exc:  # e.g. a body that is not a chat completion
            raise LlmUnavailableError(self._fail(f"{type(exc).__name__}")) from None
        if not answer.choices:
            raise LlmAnswerError(self._fail("the answer has no choices"))
        message = answer.choices[0].message
        try:
            parsed = parse_answer(message.content, getattr(message, "refusal", None), [i.news_id for i in items])
        except LlmAnswerError as exc:
            raise LlmAnswerError(self._fail(str(exc))) from None
        self._failed_at = None
        self.last_error = None
        return parsed

    def close(self) -> None:
        self._client.close()
