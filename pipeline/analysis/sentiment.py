"""Sentiment of news: a lexicon model that ships inside its package, and the per-symbol score.

**The lexicon.** VADER (``vaderSentiment``, MIT): a rule-based scorer whose 7,500-word lexicon is
a text file inside the wheel, so it needs no network and no download at run time, loads in
about 20 ms. Its rules (negation, "but",
intensifiers, capitals, exclamation marks) suit headlines. A general-purpose lexicon misses
market words ("beats", "plunges", "downgrade"), so ``FINANCE_WORDS`` adds them on VADER's own
scale (-4 to +4). Why not Loughran-McDonald: its word lists are licensed for academic use, come
as a download, and count words without negation or intensity. VADER reads English only: an item
in Vietnamese (seen by its letters) is scored 0 with confidence 0 and a note, and the optional
LLM (``pipeline.analysis.llm``) is the way to read it.

**One item** (``LexiconScorer.score``): VADER scores sentences, so the title (weight 2) and the
first two sentences of the content's first 300 characters (weight 1 each, when not neutral)
are scored apart and their compounds averaged, in [-1, 1]; confidence grows with the share of words that carry
sentiment (0.1 when none does). About 0.35 ms an item (``bench.analysis``).

**A symbol** (``combine``): the items' scores weighted by recency (half-life ``HALF_LIFE_H``
hours from the newest of now and the items' times) and by their confidence; the confidence of
the whole is ``1 - exp(-total weight)`` times how much the items agree. ``negative_recent``
counts items of the last 6 hours with a score <= -0.3: a cluster is the aggregation's risk rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MODEL_VERSION = "vader-3.3.2+finance-1"
HALF_LIFE_H = 6.0
CLUSTER_HOURS = 6.0
NEGATIVE = -0.3
LEAD_CHARS = 300
LEAD_SENTENCES = 2
_SENTENCE = re.compile(r"(?<=[.!?])\s+")

FINANCE_WORDS: dict[str, float] = {
    "beat": 2.0,
    "beats": 2.0,
    "surge": 2.3,
    "surges": 2.3,
    "surged": 2.3,
    "soar": 2.5,
    "soars": 2.5,
    "soared": 2.5,
    "jump": 1.5,
    "jumps": 1.5,
    "jumped": 1.5,
    "rally": 1.8,
    "rallies": 1.8,
    "rallied": 1.8,
    "upgrade": 2.0,
    "upgrades": 2.0,
    "upgraded": 2.0,
    "outperform": 1.8,
    "outperforms": 1.8,
    "growth": 1.5,
    "profit": 1.5,
    "profits": 1.5,
    "profitable": 1.8,
    "record-high": 2.0,
    "buyback": 1.2,
    "dividend": 1.0,
    "bullish": 2.5,
    "plunge": -2.8,
    "plunges": -2.8,
    "plunged": -2.8,
    "tumble": -2.3,
    "tumbles": -2.3,
    "tumbled": -2.3,
    "slump": -2.2,
    "slumps": -2.2,
    "slumped": -2.2,
    "drop": -1.3,
    "drops": -1.3,
    "dropped": -1.3,
    "fall": -1.2,
    "falls": -1.2,
    "fell": -1.2,
    "miss": -1.8,
    "misses": -1.8,
    "missed": -1.8,
    "downgrade": -2.0,
    "downgrades": -2.0,
    "downgraded": -2.0,
    "underperform": -1.8,
    "lawsuit": -1.8,
    "sued": -1.8,
    "probe": -1.5,
    "investigation": -1.6,
    "recall": -1.8,
    "recalls": -1.8,
    "bankruptcy": -3.2,
    "default": -2.0,
    "layoffs": -1.8,
    "halt": -2.0,
    "halted": -2.0,
    "bearish": -2.5,
    "decline": -1.4,
    "declines": -1.4,
    "declined": -1.4,
    "slowdown": -1.4,
    "shortfall": -1.6,
    "writedown": -1.8,
}
_VIETNAMESE = re.compile(r"[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", re.I)
LEXICON_NOTE = "the lexicon reads English only; set LLM_BASE_URL to score other languages"


def language_of(text: str) -> str:
    """``vi`` when the text has Vietnamese letters, else ``en`` (all the lexicon can tell)."""
    return "vi" if len(_VIETNAMESE.findall(text)) >= 2 else "en"


@dataclass(frozen=True)
class ItemScore:
    """One item's sentiment: score in [-1, 1], confidence in [0, 1], by which model, and why."""

    score: float
    confidence: float
    model: str
    language: str = "en"
    note: str = ""
    reason: str = ""


class LexiconScorer:
    """VADER with the finance words. Build once (20 ms); ``score`` is safe from any thread."""

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._vader = SentimentIntensityAnalyzer()
        self._vader.lexicon.update(FINANCE_WORDS)

    def score(self, title: str, content: str = "") -> ItemScore:
        """Score a headline (weight 2) and the first two sentences of its content (weight 1 each,
        when they carry any sentiment: a neutral sentence does not dilute the headline)."""
        lead = [s for s in _SENTENCE.split(content[:LEAD_CHARS].strip()) if len(s) > 3][:LEAD_SENTENCES]
        language = language_of(f"{title} {' '.join(lead)}")
        if language != "en":
            return ItemScore(0.0, 0.0, MODEL_VERSION, language, LEXICON_NOTE)
        parts = [(2.0, self._vader.polarity_scores(title.strip()))] if title.strip() else []
        parts += [(1.0, p) for p in map(self._vader.polarity_scores, lead) if p["pos"] + p["neg"] > 0]
        weight = sum(w for w, _ in parts) or 1.0
        compound = sum(w * p["compound"] for w, p in parts) / weight
        carried = sum(w * (p["pos"] + p["neg"]) for w, p in parts) / weight
        confidence = 0.1 if carried == 0 else min(1.0, 0.3 + 1.4 * carried)
        return ItemScore(round(max(-1.0, min(1.0, compound)), 4), round(confidence, 4), MODEL_VERSION)


@dataclass(frozen=True)
class ScoredItem:
    """An item of a symbol with its score, as ``combine`` weighs it."""

    news_id: str
    title: str
    published_ms: int
    score: ItemScore


@dataclass(frozen=True)
class SymbolSentiment:
    """The sentiment of one symbol: score, confidence, and what went into it."""

    score: float
    confidence: float
    details: dict[str, Any] = field(default_factory=dict)


def combine(items: Sequence[ScoredItem], now_ms: int, *, half_life_h: float = HALF_LIFE_H) -> SymbolSentiment:
    """Weigh ``items`` by recency and confidence into one score (see the module docstring)."""
    ref = max([now_ms, *(i.published_ms for i in items)])
    rows = []
    total = signed = magnitude = 0.0
    negative_recent = 0
    for item in sorted(items, key=lambda i: i.published_ms, reverse=True):
        age_h = max(0.0, (ref - item.published_ms) / 3_600_000)
        recency = 0.5 ** (age_h / half_life_h)
        weight = recency * item.score.confidence
        total += weight
        signed += weight * item.score.score
        magnitude += weight * abs(item.score.score)
        if age_h <= CLUSTER_HOURS and item.score.score <= NEGATIVE and item.score.confidence >= 0.3:
            negative_recent += 1
        rows.append(
            {
                "news_id": item.news_id,
                "title": item.title,
                "published_ms": item.published_ms,
                "score": round(item.score.score, 4),
                "confidence": item.score.confidence,
                "weight": round(weight, 4),
                "model": item.score.model,
                "language": item.score.language,
                **({"note": item.score.note} if item.score.note else {}),
                **({"reason": item.score.reason} if item.score.reason else {}),
            }
        )
    score = signed / total if total > 0 else 0.0
    agreement = abs(signed) / magnitude if magnitude > 0 else 0.0
    confidence = (1.0 - math.exp(-total)) * agreement
    notes = sorted({i.score.note for i in items if i.score.note})
    details = {
        "items": rows,
        "count": len(rows),
        "negative_recent": negative_recent,
        "half_life_hours": half_life_h,
        **({"notes": notes} if notes else {}),
    }
    return SymbolSentiment(max(-1.0, min(1.0, score)), round(max(0.0, min(1.0, confidence)), 4), details)
