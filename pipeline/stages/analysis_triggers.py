"""analysis-triggers: seed 003's consumer of the raw topics (its ``storage-consumers``): stores news
items, and turns bars and news into debounced ``analysis_triggers``.

* ``stock_news_raw``: each item is stored once by (news_id, symbol) in ``stock_news``
  (``storage.analysis``); only items new to the store trigger, so a re-fetched or re-imported
  item triggers nothing. The write is done before the triggers are published, so the sentiment
  stage finds every item its trigger names.
* ``stock_prices_raw``: read, not stored: ``stock-bars-store`` (the stocks' store) writes bars.
  A price trigger carries the symbol's latest bars, so the technical analysis never waits for
  that store.
* Debouncing: the wiring runs this stage with a fill wait of ``ANALYSIS_DEBOUNCE_MS``, so a
  batch gathers what arrives in that window, and ``pipeline.analysis.triggers.Coalescer`` makes at
  most one price and one news trigger per symbol of it.

Replayed input (header ``feed: replay``) makes triggers with the same header, all the way to the
alerts, which the notifier then leaves alone. Runs on its runner's thread.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from pipeline.analysis.triggers import BarIn, Coalescer, NewsIn, TriggerDraft, trigger_id
from pipeline.bus.base import Record
from pipeline.messages import AnalysisTrigger, Message, StockNews, StockPrice
from pipeline.runner import FEED_HEADER, REPLAY, REPLAY_HEADERS, Output, Stage
from pipeline.topics import STOCK_NEWS_RAW, STOCK_PRICES_RAW
from storage import analysis
from storage.db import Database


def now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds")


class AnalysisTriggers(Stage):
    """Consumer of ``stock_prices_raw`` and ``stock_news_raw``; producer of ``analysis_triggers``."""

    name: ClassVar[str] = "analysis-triggers"
    inputs: ClassVar[tuple[str, ...]] = (STOCK_PRICES_RAW, STOCK_NEWS_RAW)

    def __init__(self, db: Database, *, big_move_pct: float = 2.0) -> None:
        self.db = db
        self.coalescer = Coalescer(big_move_pct)
        self.stored = 0
        self.seen = 0
        self.triggers = 0

    def prepare_record(self, message: Message, record: Record) -> tuple[Message, bool]:
        return message, record.header(FEED_HEADER) == REPLAY

    def process_batch(self, messages: list[tuple[Message, bool]]) -> list[Output]:
        bars: list[BarIn] = []
        items: list[StockNews] = []
        replay: dict[str, bool] = {}  # symbol -> every input of it was replayed
        for message, replayed in messages:
            if isinstance(message, StockPrice):
                bars.append(
                    BarIn(
                        message.symbol,
                        message.timeframe,
                        message.start_ms,
                        message.open,
                        message.high,
                        message.low,
                        message.close,
                        message.volume,
                    )
                )
                replay[message.symbol] = replay.get(message.symbol, True) and replayed
            elif isinstance(message, StockNews):
                items.append(message)
                replay[message.symbol] = replay.get(message.symbol, True) and replayed
        new: set[tuple[str, str]] = set()
        if items:
            rows: list[analysis.NewsRow] = [
                (
                    n.news_id,
                    n.symbol,
                    n.title,
                    n.content,
                    n.source,
                    n.source_url,
                    n.published_at,
                    n.published_ms,
                    n.collected_at,
                    n.category,
                    n.tags,
                )
                for n in items
            ]
            new = set(self.db.write(lambda db: analysis.store_news(db.conn, rows)))
            self.stored += len(new)
            self.seen += len(items) - len(new)
        fresh = list(
            {
                (n.news_id, n.symbol): NewsIn(n.symbol, n.news_id, n.title, tuple(n.tags))
                for n in items
                if (n.news_id, n.symbol) in new
            }.values()
        )
        drafts = self.coalescer.coalesce(bars, fresh)
        self.triggers += len(drafts)
        return [self._trigger(d, replay.get(d.symbol, False)) for d in drafts]

    @staticmethod
    def _trigger(draft: TriggerDraft, replayed: bool) -> Output:
        trigger = AnalysisTrigger(
            trigger_id=trigger_id(),
            symbol=draft.symbol,
            trigger_type=draft.trigger_type,
            timestamp=now_iso(),
            metadata=draft.metadata,
        )
        return (trigger, REPLAY_HEADERS) if replayed else trigger

    def status(self) -> dict[str, Any]:
        return {"news_stored": self.stored, "news_seen_before": self.seen, "triggers": self.triggers}
