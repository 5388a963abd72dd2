"""enricher: ``normalized-trades`` -> ``enriched-trades``, with the market context at entry and exit.

The context comes from the 1-minute bars the market store holds: the price at the time, the
24-hour change, the volatility of the last hour's 1-minute returns and the trend of the last hour
(close against its mean). A time with no bar in the ``MAX_GAP_MS`` before it is marked
``{"missing": true}`` with the reason, never guessed.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

from pipeline.messages import EnrichedTrade, Message, Trade, extend
from pipeline.runner import Stage
from pipeline.topics import NORMALIZED_TRADES
from storage import market
from storage.db import Database

MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS
MAX_GAP_MS = 5 * MINUTE_MS
WINDOW_BARS = 60
TREND_BAND_PCT = 0.1


def context_at(closes: list[float], day_ago: float | None) -> dict[str, Any]:
    """Return the context of a time from the closes of the bars up to it (oldest first)."""
    price = closes[-1]
    returns = [math.log(b / a) for a, b in itertools.pairwise(closes)]
    if len(returns) >= 2:
        mean = sum(returns) / len(returns)
        volatility = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)) * 100
    else:
        volatility = None
    avg = sum(closes) / len(closes)
    off = (price / avg - 1) * 100
    trend = "flat" if len(closes) < 10 or abs(off) < TREND_BAND_PCT else ("up" if off > 0 else "down")
    return {
        "price": price,
        "change_24h_pct": None if day_ago is None else (price / day_ago - 1) * 100,
        "volatility_pct": volatility,
        "trend": trend,
        "bars": len(closes),
    }


class Enricher(Stage):
    """Runs on its runner's thread; reads bars on its own connection to the desk's database."""

    name: ClassVar[str] = "enricher"
    inputs: ClassVar[tuple[str, ...]] = (NORMALIZED_TRADES,)
    input_model: ClassVar[type[Message] | None] = Trade

    def __init__(self, db: Database) -> None:
        self.db = db

    def process_batch(self, messages: list[Message]) -> list[Message]:
        spans: dict[str, tuple[int, int] | None] = {}
        out: list[Message] = []
        for m in messages:
            assert isinstance(m, Trade)
            # ``m`` was validated on the way in; only the context is new, and it is built here.
            if m.void:
                out.append(extend(EnrichedTrade, m, context={}))
                continue
            if m.symbol not in spans:
                spans[m.symbol] = market.span(self.db, m.symbol)
            context = {"entry": self._at(spans[m.symbol], m.symbol, m.entry_time)}
            if m.exit_time is not None:
                context["exit"] = self._at(spans[m.symbol], m.symbol, m.exit_time)
            out.append(extend(EnrichedTrade, m, context=context))
        return out

    def _at(self, span: tuple[int, int] | None, symbol: str, t: int) -> dict[str, Any]:
        if span is None:
            return {"missing": True, "reason": f"no market data for {symbol}"}
        if t < span[0] or t - span[1] > MAX_GAP_MS + MINUTE_MS:
            return {"missing": True, "reason": f"no {symbol} bars around this time"}
        rows = market.closes_until(self.db, symbol, t, WINDOW_BARS)
        if not rows or t - rows[0][0] > MAX_GAP_MS:
            return {"missing": True, "reason": f"no {symbol} bar within 5 minutes before this time"}
        day = market.close_between(self.db, symbol, t - DAY_MS - MAX_GAP_MS, t - DAY_MS)
        return context_at([c for _, c in reversed(rows)], day)
