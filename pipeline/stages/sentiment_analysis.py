"""sentiment-analysis: ``analysis_triggers`` in, a ``sentiment`` result on ``analysis_results`` out.

For a ``news_update`` or ``scheduled`` trigger (a ``price_update`` changes no news and is
skipped), it reads the symbol's items of the last ``NEWS_WINDOW_H`` hours from ``stock_news``
(the triggers stage stored them before the trigger was published), scores each item once and
records its score there, then weighs them by recency (``pipeline.analysis.sentiment``).

* Items are scored by the lexicon (VADER with finance words), which needs no network.
* With ``LLM_BASE_URL`` and ``LLM_MODEL`` set, the newest items not yet read by the LLM (at most
  20 a trigger) go to the LLM too, and its scores replace the lexicon's. An LLM that is slow,
  refuses or answers malformed JSON costs at most ``LLM_TIMEOUT_S`` once; the lexicon's scores
  stand, ``details.notes`` says why, and the LLM is left alone for a minute
  (``pipeline.analysis.llm_client``).

``metadata``: ``model_version`` (the lexicon's, or ``llm:<model>`` when the LLM scored any item),
``processing_time`` (seconds), ``trigger_id``, ``trigger_type``, ``priority``, ``llm`` (``used``,
``fallback`` or ``off``). Runs on its runner's thread; triggers of one symbol in a batch make
one result.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.analysis.llm import LlmAnswerError, LlmUnavailableError, PromptItem
from pipeline.analysis.sentiment import MODEL_VERSION, ItemScore, LexiconScorer, ScoredItem, combine
from pipeline.bus.base import Record
from pipeline.messages import AnalysisResult, AnalysisTrigger, Message
from pipeline.runner import FEED_HEADER, REPLAY, REPLAY_HEADERS, Output, Stage
from pipeline.stages.analysis_triggers import now_iso
from pipeline.topics import ANALYSIS_TRIGGERS
from storage import analysis
from storage.db import Database

if TYPE_CHECKING:
    from pipeline.analysis.llm_client import LlmScorer

NEWS_WINDOW_H = 48
MAX_ITEMS = 50
LLM_ITEMS = 20


class SentimentAnalysis(Stage):
    """Consumer of ``analysis_triggers``; producer of sentiment ``analysis_results``."""

    name: ClassVar[str] = "sentiment-analysis"
    inputs: ClassVar[tuple[str, ...]] = (ANALYSIS_TRIGGERS,)

    def __init__(
        self,
        db: Database,
        *,
        llm: LlmScorer | None = None,
        aliases: dict[str, tuple[str, ...]] | None = None,
        lexicon: LexiconScorer | None = None,
    ) -> None:
        self.db = db
        self.llm = llm
        self.aliases = aliases or {}
        self.lexicon = lexicon or LexiconScorer()
        self.results = 0
        self.items_scored = 0
        self.llm_fallbacks = 0
        self.last_note: str | None = None

    def prepare_record(self, message: Message, record: Record) -> tuple[Message, bool]:
        return message, record.header(FEED_HEADER) == REPLAY

    def process_batch(self, messages: list[tuple[Message, bool]]) -> list[Output]:
        latest: dict[str, tuple[AnalysisTrigger, bool]] = {}
        for message, replayed in messages:
            if isinstance(message, AnalysisTrigger) and message.trigger_type != "price_update":
                latest[message.symbol] = (message, replayed)
        out: list[Output] = []
        for symbol, (trigger, replayed) in latest.items():
            result = self._analyse(trigger, symbol)
            if result is not None:
                out.append((result, REPLAY_HEADERS) if replayed else result)
        return out

    def _analyse(self, trigger: AnalysisTrigger, symbol: str) -> AnalysisResult | None:
        began = time.perf_counter()
        now_ms = int(time.time() * 1000)
        items = analysis.news_for(self.db.reader().conn, symbol, now_ms - NEWS_WINDOW_H * 3_600_000, MAX_ITEMS)
        if not items:
            return None
        scores: dict[str, ItemScore] = {}
        updates: list[tuple[str, str, float, float, str, dict[str, Any]]] = []
        for item in items:
            if item["sentiment"] is not None:
                detail = item["sentiment_detail"] or {}
                scores[item["news_id"]] = ItemScore(
                    float(item["sentiment"]),
                    float(item["sentiment_confidence"]),
                    str(item["sentiment_model"]),
                    str(detail.get("language", "en")),
                    str(detail.get("note", "")),
                    str(detail.get("reason", "")),
                )
                continue
            s = self.lexicon.score(item["title"], item["content"])
            scores[item["news_id"]] = s
            updates.append((item["news_id"], symbol, s.score, s.confidence, s.model, _detail(s)))
        llm_state, note = self._llm(symbol, items, scores, updates)
        if updates:
            self.db.write(lambda db: analysis.set_sentiment(db.conn, updates))
            self.items_scored += len(updates)
        found = combine(
            [ScoredItem(i["news_id"], i["title"], int(i["published_ms"]), scores[i["news_id"]]) for i in items],
            now_ms,
        )
        details = dict(found.details)
        if note:
            details["notes"] = [*details.get("notes", []), note]
        models = {scores[i["news_id"]].model for i in items}
        self.results += 1
        return AnalysisResult.model_validate(
            {
                "result_id": str(uuid.uuid4()),
                "symbol": symbol,
                "analysis_type": "sentiment",
                "timestamp": now_iso(),
                "results": {"score": found.score, "confidence": found.confidence, "details": details},
                "metadata": {
                    "model_version": next((m for m in sorted(models) if m.startswith("llm:")), MODEL_VERSION),
                    "processing_time": round(time.perf_counter() - began, 6),
                    "trigger_id": trigger.trigger_id,
                    "trigger_type": trigger.trigger_type,
                    "priority": trigger.metadata.get("priority", "normal"),
                    "llm": llm_state,
                },
            }
        )

    def _llm(
        self,
        symbol: str,
        items: list[dict[str, Any]],
        scores: dict[str, ItemScore],
        updates: list[tuple[str, str, float, float, str, dict[str, Any]]],
    ) -> tuple[str, str | None]:
        """Let the LLM score the items it has not read; return (state, note for the result)."""
        if self.llm is None:
            return "off", None
        todo = [i for i in items if scores[i["news_id"]].model != self.llm.version][:LLM_ITEMS]
        if not todo:
            return "used", None
        prompt = [PromptItem(i["news_id"], i["title"], i["content"], i["published_at"]) for i in todo]
        try:
            answers = self.llm.score(symbol, self.aliases.get(symbol, ()), prompt)
        except (LlmUnavailableError, LlmAnswerError) as exc:
            self.llm_fallbacks += 1
            self.last_note = f"LLM not used ({exc}); lexicon scores"
            return "fallback", self.last_note
        for a in answers:
            s = ItemScore(a.score, a.confidence, self.llm.version, "", "", a.reason)
            scores[a.news_id] = s
            updates[:] = [u for u in updates if u[0] != a.news_id]
            updates.append((a.news_id, symbol, s.score, s.confidence, s.model, {"reason": a.reason}))
        return "used", None

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"results": self.results, "items_scored": self.items_scored}
        if self.llm is not None:
            out.update(
                llm_requests=self.llm.requests,
                llm_failures=self.llm.failures,
                llm_fallbacks=self.llm_fallbacks,
                llm_last_error=self.llm.last_error,
            )
        return out


def _detail(score: ItemScore) -> dict[str, Any]:
    return {"language": score.language, **({"note": score.note} if score.note else {})}
