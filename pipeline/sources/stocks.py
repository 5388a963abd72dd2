"""What every stock source shares (``StockFeed``): the feed's rules, then both of seed 004's paths.

A stock source (the Alpaca stream, the simulator, the file replay) turns what it receives into
the fields of a trade or a bar and calls ``trade`` or ``bar``. Each checks the message model's
rules (``StockTrade``, seed 003's ``StockPrice``), then the feed's own:

* the symbol is one of ``SUBSCRIBED_SYMBOLS``;
* live data is fresh: a trade within ``max_age_ms`` of now, a bar whose end is (a bar may not
  start in the future either); replays and backfills are exempt (header ``feed: replay``).

What breaks a rule is dead-lettered on ``<topic>_dlq`` with the raw input and the rule, counted
by rule, and the feed goes on; ``trade`` and ``bar`` never raise for bad input. A good trade goes
first to the fan-out (the low-latency path: in process or Redis, never waiting) with
``received_ns``, when the source received it, then to ``stock_trades_raw`` (the durable path); a
good bar goes to ``stock_prices_raw`` in seed 003's format (``time`` and ``collected_at`` as
ISO-8601 with the exchange's offset). ``flush`` makes the bus's share durable; call it once per
frame or batch, not per message.

Used from the source's own thread only (the counters may be read from any thread).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from pipeline.bus.base import Producer
from pipeline.dead_letters import publish_dead_letter
from pipeline.errors import BadMessageError, Violation
from pipeline.fanout import TradeFanout
from pipeline.messages import StockPrice, StockTrade, build, encode, ms_iso, violations_of
from pipeline.runner import FEED_HEADER, REPLAY
from pipeline.topics import STOCK_PRICES_RAW, STOCK_TRADES_RAW
from pipeline.worker_health import Health

EXCHANGE_TZ = ZoneInfo("America/New_York")
LIVE = b"live"
MAX_AGE_MS = 5 * 60_000
TIMEFRAME_MS = {"1Min": 60_000, "1Day": 86_400_000}


class StockFeed:
    """The rules and the two paths of one stock source named ``name``."""

    def __init__(
        self,
        name: str,
        producer: Producer,
        fanout: TradeFanout,
        symbols: Iterable[str],
        health: Health,
        *,
        replay: bool = False,
        max_age_ms: int = MAX_AGE_MS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.producer = producer
        self.fanout = fanout
        self.symbols = frozenset(symbols)
        self.health = health
        self.replay = replay
        self.max_age_ms = max_age_ms
        self.clock = clock
        self.trades = 0  # accepted, both paths
        self.bars = 0
        self.rejections: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._pending = 0
        self._live = [(FEED_HEADER, LIVE)]
        self._replay = [(FEED_HEADER, REPLAY)]

    # -- the rules -----------------------------------------------------------------------------

    def _known(self, symbol: object) -> None:
        if self.symbols and symbol not in self.symbols:
            rule = f"one of SUBSCRIBED_SYMBOLS ({', '.join(sorted(self.symbols))})"
            raise BadMessageError([Violation("symbol", symbol, rule)])

    def _fresh(self, field: str, start_ms: int, end_ms: int, now_ms: int) -> None:
        if end_ms < now_ms - self.max_age_ms:
            minutes = self.max_age_ms // 60_000
            raise BadMessageError([Violation(field, start_ms, f"within the last {minutes} minutes of now ({now_ms})")])
        if start_ms > now_ms + 60_000:
            raise BadMessageError([Violation(field, start_ms, f"not in the future (now is {now_ms})")])

    # -- the two paths -------------------------------------------------------------------------

    def trade(
        self,
        raw: Any,
        *,
        symbol: str,
        timestamp: int,
        price: float,
        size: float,
        trade_id: int,
        exchange: str | None = None,
        conditions: Sequence[str] = (),
        tape: str | None = None,
        received_ns: int | None = None,
        replay: bool | None = None,
    ) -> StockTrade | None:
        """Check one trade, send it to the fan-out and to ``stock_trades_raw``; dead-letter it instead
        when it breaks a rule. Return the trade, or None when it was refused."""
        received_ns = received_ns or time.time_ns()
        replay = self.replay if replay is None else replay
        try:
            trade = StockTrade.model_validate(
                {
                    "symbol": symbol,
                    "timestamp": timestamp,
                    "price": price,
                    "size": size,
                    "trade_id": trade_id,
                    "exchange": exchange,
                    "conditions": tuple(conditions),
                    "tape": tape,
                    "collected_at": received_ns // 1_000_000,
                },
                strict=False,
            )
            self._known(trade.symbol)
            if not replay:
                self._fresh("timestamp", trade.timestamp, trade.timestamp, int(self.clock() * 1000))
        except ValidationError as exc:
            self.reject(raw, BadMessageError(violations_of(exc)), topic=STOCK_TRADES_RAW, key=symbol)
            return None
        except BadMessageError as exc:
            self.reject(raw, exc, topic=STOCK_TRADES_RAW, key=symbol)
            return None
        payload = dict(trade.__dict__)
        payload["received_ns"] = received_ns
        self.fanout.publish(payload)
        self.producer.produce(
            STOCK_TRADES_RAW, encode(trade), key=trade.key(), headers=self._replay if replay else self._live
        )
        self._pending += 1
        self.trades += 1
        return trade

    def bar(
        self,
        raw: Any,
        *,
        symbol: str,
        start_ms: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        timeframe: str = "1Min",
        trade_count: int | None = None,
        vwap: float | None = None,
        replay: bool | None = None,
    ) -> StockPrice | None:
        """Check one bar and publish it on ``stock_prices_raw``; dead-letter it instead when it breaks
        a rule. Return the bar, or None when it was refused."""
        replay = self.replay if replay is None else replay
        now_ms = int(self.clock() * 1000)
        try:
            bar = build(
                StockPrice,
                symbol=symbol,
                time=ms_iso(start_ms, EXCHANGE_TZ),
                open=open,
                high=high,
                low=low,
                close=close,
                volume=volume,
                collected_at=ms_iso(now_ms, EXCHANGE_TZ),
                timeframe=timeframe,
                trade_count=trade_count,
                vwap=vwap,
            )
            assert isinstance(bar, StockPrice)
            self._known(bar.symbol)
            if not replay:
                self._fresh("time", start_ms, start_ms + TIMEFRAME_MS[bar.timeframe], now_ms)
        except BadMessageError as exc:
            self.reject(raw, exc, topic=STOCK_PRICES_RAW, key=symbol)
            return None
        self.producer.produce(
            STOCK_PRICES_RAW, encode(bar), key=bar.key(), headers=self._replay if replay else self._live
        )
        self._pending += 1
        self.bars += 1
        return bar

    def reject(
        self, raw: Any, exc: BadMessageError | str, *, topic: str = STOCK_TRADES_RAW, key: str | None = None
    ) -> None:
        """Dead-letter ``raw`` (a frame, a row, a dict) on ``<topic>_dlq`` with the reason; count it."""
        if isinstance(exc, str):
            exc = BadMessageError(exc)
        value = raw if isinstance(raw, (bytes, str)) else repr(raw)
        keyed = key.encode() if isinstance(key, str) and key else None
        reason = publish_dead_letter(self.producer, exc, topic=topic, value=value, stage=self.name, key=keyed)
        rule = exc.violations[0].rule if exc.violations else reason
        with self._lock:
            self.rejections[rule] += 1
        with self.health.lock:
            self.health.dead_lettered += 1
            self.health.last_error = reason
        self._pending += 1

    def flush(self, timeout: float = 30.0) -> int:
        """Make what was published durable on the bus; return how many messages were not delivered."""
        pending, self._pending = self._pending, 0
        if not pending:
            return 0
        undelivered = self.producer.flush(timeout)
        with self.health.lock:
            self.health.produced += max(0, pending - undelivered)
            self.health.last_activity_at = time.time()
        if undelivered:
            self.health.error(f"{undelivered} stock messages not delivered")
        return undelivered

    def status(self) -> dict[str, Any]:
        """Counters for the page and ``/health`` (safe from any thread)."""
        with self._lock:
            rejections = dict(self.rejections)
        return {
            "trades": self.trades,
            "bars": self.bars,
            "rejections": rejections,
            "fast_path": self.fanout.stats().to_json(),
        }
