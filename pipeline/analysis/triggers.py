"""Analysis triggers (seed 003's ``analysis_triggers``): what a batch of bars and news asks for, and
the schedule.

**Debouncing.** The triggers stage reads bars and news in batches that close once their first
message waited ``ANALYSIS_DEBOUNCE_MS`` (the runner's fill wait), and ``coalesce`` turns one
batch into at most two triggers per symbol: one ``price_update`` for all its bars, one
``news_update`` for all its new items. A burst of 1,000 bars of a symbol is one or two batches,
so one or two jobs. ``metadata.data_count`` says how many bars or items a trigger stands for.

**What a trigger carries** (extensions of seed 003's ``metadata``, all optional):

* ``priority``: ``normal``; ``high`` for a move of ``ANALYSIS_BIG_MOVE_PCT`` or more between the
  close before the batch (or its first open) and its last close, or for breaking news (a halt, a
  bankruptcy, "breaking": ``pipeline.analysis.news.is_breaking``); ``critical`` for a move twice
  that large;
* ``bars``: the symbol's latest bars (at most ``TRIGGER_BARS``, ``[start, open, high, low, close,
  volume]``) and ``timeframe``, so the technical analysis need not wait for the bar store's
  write; ``move_pct``;
* ``news_ids``: the new items (at most 50), stored before the trigger is published.

**The schedule.** ``Schedule`` wraps croniter: ``ANALYSIS_SCHEDULE`` is a five-field cron
expression in New York time (the exchange's), ``*/15 9-16 * * mon-fri`` by default.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pipeline.analysis.news import is_breaking

TriggerType = Literal["price_update", "news_update", "scheduled"]
Priority = Literal["normal", "high", "critical"]
TRIGGER_BARS = 60
TRIGGER_NEWS = 50
EXCHANGE_TZ = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class BarIn:
    """A bar as the triggers read it from ``stock_prices_raw``."""

    symbol: str
    timeframe: str
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class NewsIn:
    """A new news item as the triggers read it from ``stock_news_raw``."""

    symbol: str
    news_id: str
    title: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class TriggerDraft:
    """A trigger to publish: the stage adds its id and time."""

    symbol: str
    trigger_type: TriggerType
    metadata: dict[str, Any] = field(default_factory=dict)


def trigger_id() -> str:
    return str(uuid.uuid4())


def move_priority(move_pct: float, big_move_pct: float) -> Priority:
    """``critical`` from twice the big move, ``high`` from the big move, else ``normal``."""
    size = abs(move_pct)
    return "critical" if size >= 2 * big_move_pct else "high" if size >= big_move_pct else "normal"


class Coalescer:
    """Turns batches into triggers. Keeps each symbol's last close and latest bars (bounded) so a
    trigger carries its history; used from the triggers stage's thread only."""

    def __init__(self, big_move_pct: float) -> None:
        self.big_move_pct = big_move_pct
        self._last_close: dict[tuple[str, str], float] = {}
        self._bars: dict[tuple[str, str], dict[int, list[float]]] = {}

    def coalesce(self, bars: Iterable[BarIn], news: Iterable[NewsIn]) -> list[TriggerDraft]:
        """At most one price and one news trigger per symbol (and timeframe) for this batch."""
        by_symbol: dict[tuple[str, str], list[BarIn]] = {}
        for bar in bars:
            by_symbol.setdefault((bar.symbol, bar.timeframe), []).append(bar)
        out: list[TriggerDraft] = []
        for (symbol, timeframe), group in by_symbol.items():
            group.sort(key=lambda b: b.start)
            key = (symbol, timeframe)
            before = self._last_close.get(key, group[0].open)
            move = (group[-1].close / before - 1) * 100 if before > 0 else 0.0
            window = self._bars.setdefault(key, {})
            for b in group:
                window[b.start] = [b.start, b.open, b.high, b.low, b.close, b.volume]
            for start in sorted(window)[:-TRIGGER_BARS]:
                del window[start]
            latest = max(window)
            self._last_close[key] = window[latest][4]
            out.append(
                TriggerDraft(
                    symbol,
                    "price_update",
                    {
                        "data_count": len(group),
                        "priority": move_priority(move, self.big_move_pct),
                        "timeframe": timeframe,
                        "move_pct": round(move, 4),
                        "bars": [window[s] for s in sorted(window)],
                    },
                )
            )
        items: dict[str, list[NewsIn]] = {}
        for item in news:
            items.setdefault(item.symbol, []).append(item)
        for symbol, fresh in items.items():
            breaking = any(is_breaking(i.title, i.tags) for i in fresh)
            out.append(
                TriggerDraft(
                    symbol,
                    "news_update",
                    {
                        "data_count": len(fresh),
                        "priority": "high" if breaking else "normal",
                        "news_ids": [i.news_id for i in fresh][:TRIGGER_NEWS],
                        **({"breaking": True} if breaking else {}),
                    },
                )
            )
        return out


class Schedule:
    """A cron expression in New York time: ``next_after`` gives the next firing, Unix seconds."""

    def __init__(self, expression: str) -> None:
        from croniter import croniter

        if not croniter.is_valid(expression):
            raise ValueError(f"{expression!r} is not a cron expression")
        self.expression = expression

    def next_after(self, now_s: float) -> float:
        from croniter import croniter

        start = datetime.fromtimestamp(now_s, tz=EXCHANGE_TZ)
        return float(croniter(self.expression, start).get_next(float))
