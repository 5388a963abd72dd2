"""The LLM's sentiment of news: the prompt, and the parsing of its answer. Nothing else.

The desk asks any OpenAI-compatible chat-completions endpoint (``LLM_BASE_URL``, ``LLM_MODEL``;
``pipeline.analysis.llm_client`` sends it) to score a symbol's news items for what they mean for
the stock's price, in any language, as JSON::

    {"items": [{"id": "<news_id>", "score": -1..1, "confidence": 0..1, "reason": "<a few words>"}]}

``parse_answer`` accepts that object (bare, or inside a ```json fence) and nothing else: it
raises ``LlmAnswerError`` saying why (a refusal, no JSON, a field out of range, an id it was not
asked about), and the caller falls back to the lexicon for the items the answer does not cover,
with a note. Items are sent with their title and the first ``CONTENT_CHARS`` characters of their
content; at most ``MAX_ITEMS`` per request.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import PipelineError

MAX_ITEMS = 20
CONTENT_CHARS = 600

SYSTEM_PROMPT = (
    "You are a financial news analyst. For each news item, judge what it means for the price of the "
    "named stock over the next days: -1 is very negative, 0 neutral or unrelated, +1 very positive. "
    "Items may be in any language (often Vietnamese or English). Answer with one JSON object and "
    'nothing else: {"items": [{"id": "<the item id>", "score": <number from -1 to 1>, '
    '"confidence": <number from 0 to 1>, "reason": "<at most 12 words, in English>"}]}, one entry '
    "per item, using the ids given."
)


class LlmAnswerError(PipelineError):
    """The endpoint answered, but not with what was asked (a refusal, malformed JSON, a bad field)."""


class LlmUnavailableError(PipelineError):
    """The endpoint did not answer in time, refused the request or could not be reached."""


@dataclass(frozen=True)
class LlmItem:
    """What the LLM said of one item."""

    news_id: str
    score: float
    confidence: float
    reason: str


@dataclass(frozen=True)
class PromptItem:
    """An item as the prompt shows it."""

    news_id: str
    title: str
    content: str
    published_at: str


def build_messages(symbol: str, aliases: Sequence[str], items: Sequence[PromptItem]) -> list[dict[str, str]]:
    """The chat messages that ask for the sentiment of ``items`` (at most ``MAX_ITEMS``) for ``symbol``."""
    shown = [
        {"id": i.news_id, "published_at": i.published_at, "title": i.title, "content": i.content[:CONTENT_CHARS]}
        for i in items[:MAX_ITEMS]
    ]
    names = f" (also called {', '.join(aliases)})" if aliases else ""
    user = f"Stock: {symbol}{names}.\nNews items as JSON:\n{json.dumps(shown, ensure_ascii=False)}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S | re.I)


def _number(entry: dict[str, Any], name: str, lo: float, hi: float) -> float:
    value = entry.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LlmAnswerError(f"item {entry.get('id')!r}: {name}={value!r} is not a number")
    if not lo <= value <= hi:
        raise LlmAnswerError(f"item {entry.get('id')!r}: {name}={value} is outside [{lo:g}, {hi:g}]")
    return float(value)


def parse_answer(content: str | None, refusal: str | None, asked: Sequence[str]) -> list[LlmItem]:
    """Parse the assistant's answer; raise ``LlmAnswerError`` naming what is wrong.

    ``refusal`` is the message's ``refusal`` field (OpenAI's structured refusals); ``asked`` the
    ids sent. An answer may leave items out (they keep the lexicon's score), never add one.
    """
    if refusal:
        raise LlmAnswerError(f"the model refused: {refusal.strip()[:120]}")
    text = (content or "").strip()
    if not text:
        raise LlmAnswerError("the answer is empty")
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LlmAnswerError(f"the answer is not JSON ({exc.msg} at character {exc.pos}): {text[:60]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise LlmAnswerError('the answer has no "items" list')
    wanted = set(asked)
    out: dict[str, LlmItem] = {}
    for entry in data["items"]:
        if not isinstance(entry, dict):
            raise LlmAnswerError(f"an item is not an object: {str(entry)[:60]!r}")
        news_id = entry.get("id")
        if news_id not in wanted:
            raise LlmAnswerError(f"the answer names an item it was not asked about: {str(news_id)[:40]!r}")
        out[str(news_id)] = LlmItem(
            str(news_id),
            _number(entry, "score", -1.0, 1.0),
            _number(entry, "confidence", 0.0, 1.0),
            str(entry.get("reason") or "")[:200],
        )
    return list(out.values())
