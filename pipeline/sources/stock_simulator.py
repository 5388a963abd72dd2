"""The stock simulator: trades and 1-minute bars for stock symbols, only while the NYSE is open.

Each symbol follows a geometric random walk (a stable starting price and volatility per symbol)
and trades a few times per tick with Poisson counts and log-normal sizes; the trades go through
``StockFeed`` (fan-out and ``stock_trades_raw``) and make up 1-minute bars published on
``stock_prices_raw`` when their minute ends. Out of session (nights, weekends, NYSE holidays,
after an early close) it publishes nothing and says "market closed, opens …" in its status:
that is not an error. On an empty ``stock_prices_raw`` it first publishes ``history_minutes``
of past session minutes as a replay, so charts have candles from the first view.

Runs on its own thread; the same seed gives the same prices for the same clock.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from pipeline.bus.base import Bus
from pipeline.fanout import TradeFanout
from pipeline.runner import Worker
from pipeline.sources.stocks import StockFeed
from pipeline.stocks.hours import MarketHours
from pipeline.topics import STOCK_PRICES_RAW

log = logging.getLogger(__name__)

YEAR_S = 252 * 6.5 * 3600  # trading seconds in a year
MINUTE_MS = 60_000

# symbol: (starting price, annualised volatility, trades per second)
PROFILES: dict[str, tuple[float, float, float]] = {
    "AAPL": (190.0, 0.25, 6.0),
    "MSFT": (420.0, 0.22, 5.0),
    "GOOGL": (170.0, 0.28, 4.0),
    "AMZN": (185.0, 0.30, 4.0),
    "NVDA": (120.0, 0.50, 8.0),
    "TSLA": (240.0, 0.60, 6.0),
}


def profile(symbol: str) -> tuple[float, float, float]:
    """Return (price, volatility, trades per second) for ``symbol``; others get a stable one."""
    if symbol in PROFILES:
        return PROFILES[symbol]
    h = zlib.crc32(symbol.encode())
    return (round(20 + h % 300 + (h % 97) / 100, 2), 0.35, 2.0)


@dataclass
class _Minute:
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    notional: float


class StockSimulatorSource(Worker):
    """Publishes simulated stock trades and bars for ``symbols`` during NYSE sessions."""

    kind = "source"

    def __init__(
        self,
        bus: Bus,
        fanout: TradeFanout,
        symbols: Iterable[str],
        hours: MarketHours,
        *,
        seed: int | None = None,
        tick_ms: int = 1000,
        history_minutes: int = 180,
        clock: Callable[[], float] = time.time,
        name: str = "stock-simulator",
    ) -> None:
        super().__init__(name)
        self.bus = bus
        self.fanout = fanout
        self.symbols = tuple(symbols)
        self.hours = hours
        self.tick_ms = tick_ms
        self.history_minutes = history_minutes
        self.clock = clock
        self.rng = np.random.default_rng(seed)
        self.prices = {s: profile(s)[0] for s in self.symbols}
        self._trade_id = 0
        self._minutes: dict[str, _Minute] = {}
        self.feed: StockFeed | None = None
        self._label = ""

    def status(self) -> dict[str, Any]:
        feed = self.feed.status() if self.feed is not None else {}
        return {**feed, "market": self._label, "symbols": list(self.symbols)}

    def _step(self, symbol: str, dt_s: float) -> float:
        vol = profile(symbol)[1]
        sigma = vol * math.sqrt(max(dt_s, 1e-6) / YEAR_S)
        self.prices[symbol] = round(self.prices[symbol] * math.exp(sigma * float(self.rng.standard_normal())), 2)
        return self.prices[symbol]

    def history(self, feed: StockFeed, end: datetime) -> int:
        """Publish ``history_minutes`` of past session minutes as replayed bars; return how many."""
        starts = self.hours.session_minutes(end, self.history_minutes)
        for start in starts:
            for symbol in self.symbols:
                rate = profile(symbol)[2]
                prices = [self._step(symbol, 60 / 8) for _ in range(8)]
                volume = float(self.rng.poisson(rate * 60) * 100)
                feed.bar(
                    None,
                    symbol=symbol,
                    start_ms=start,
                    open=prices[0],
                    high=max(prices),
                    low=min(prices),
                    close=prices[-1],
                    volume=volume,
                    trade_count=int(volume // 100),
                    vwap=round(sum(prices) / len(prices), 4),
                    replay=True,
                )
        feed.flush()
        return len(starts) * len(self.symbols)

    def tick(self, feed: StockFeed, now_ms: int) -> None:
        """Trade every symbol for one tick at ``now_ms`` (the market is open), closing finished minutes."""
        dt_s = self.tick_ms / 1000
        minute = now_ms - now_ms % MINUTE_MS
        for symbol in self.symbols:
            self._close_minute(feed, symbol, before=minute)
            for _ in range(int(self.rng.poisson(profile(symbol)[2] * dt_s))):
                price = self._step(symbol, dt_s)
                size = float(max(1, round(float(self.rng.lognormal(3.5, 1.0)))))
                self._trade_id += 1
                if (
                    feed.trade(
                        None,
                        symbol=symbol,
                        timestamp=now_ms,
                        price=price,
                        size=size,
                        trade_id=self._trade_id,
                        exchange="V",
                        conditions=("@",),
                        tape="C",
                    )
                    is None
                ):
                    continue
                m = self._minutes.get(symbol)
                if m is None:
                    m = self._minutes[symbol] = _Minute(minute, price, price, price, price, 0.0, 0, 0.0)
                m.high, m.low, m.close = max(m.high, price), min(m.low, price), price
                m.volume += size
                m.trades += 1
                m.notional += price * size

    def _close_minute(self, feed: StockFeed, symbol: str, before: int) -> None:
        m = self._minutes.get(symbol)
        if m is None or m.start >= before:
            return
        del self._minutes[symbol]
        feed.bar(
            None,
            symbol=symbol,
            start_ms=m.start,
            open=m.open,
            high=m.high,
            low=m.low,
            close=m.close,
            volume=m.volume,
            trade_count=m.trades,
            vwap=round(m.notional / m.volume, 4) if m.volume else None,
        )

    def _run(self) -> None:
        producer = self.bus.producer()
        feed = self.feed = StockFeed(self.name, producer, self.fanout, self.symbols, self.health, clock=self.clock)
        try:
            if self.history_minutes and self._topic_empty():
                self.history(feed, datetime.fromtimestamp(self.clock(), tz=UTC))
            next_at = time.monotonic()
            while not self._stop.is_set():
                now = self.clock()
                status = self.hours.status(datetime.fromtimestamp(now, tz=UTC))
                self._label = status.label
                now_ms = int(now * 1000)
                if status.open:
                    self.tick(feed, now_ms)
                else:
                    for symbol in self.symbols:  # the last minute of the session still closes
                        self._close_minute(feed, symbol, before=now_ms - now_ms % MINUTE_MS)
                feed.flush()
                next_at += self.tick_ms / 1000
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            producer.close()

    def _topic_empty(self) -> bool:
        for attempt in range(10):  # a topic created a moment ago may not have its leaders yet
            try:
                return all(t.end_offset == 0 for t in self.bus.describe_topics([STOCK_PRICES_RAW]))
            except Exception as exc:  # noqa: BLE001 - a young topic's errors vary by backend; all are retried
                log.warning("cannot read %s offsets yet (%s); retrying", STOCK_PRICES_RAW, exc)
                self._stop.wait(0.5 * (attempt + 1))
        return False
