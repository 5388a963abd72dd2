"""Alpaca market data v2 for stocks over WebSocket (``/v2/iex`` by default, ``/v2/sip`` by
setting): trades, quotes and minute, updated and daily bars for ``SUBSCRIBED_SYMBOLS``, with a
backfill of minute bars over REST at start and after every reconnect.

Per connection (Alpaca's documented handshake): the server greets with
``[{"T":"success","msg":"connected"}]``; the source sends ``{"action":"auth","key":…,"secret":…}``
and waits for ``[{"T":"success","msg":"authenticated"}]``, then subscribes ``trades``, ``quotes``,
``bars``, ``updatedBars`` and ``dailyBars`` and waits for the ``subscription`` acknowledgement.
Frames are JSON lists of items with a type ``T``: ``t`` trade (``i`` id, ``x`` exchange, ``p``, ``s``,
``c`` conditions, ``z`` tape, ``t`` RFC-3339 with nanoseconds), ``q`` quote, ``b`` minute bar, ``u``
updated (corrected) minute bar, ``d`` daily bar, ``c``/``x`` trade corrections and cancels (counted,
not applied), ``error``.

Trades go through ``StockFeed`` (the fan-out, then ``stock_trades_raw``); bars go to
``stock_prices_raw`` (an updated bar replaces its minute in the store). Quotes are kept as the
latest per symbol in the status (no topic carries quotes). A frame that is not JSON, or an item
shaped unlike the docs, is dead-lettered and the stream goes on.

Errors: 402 ``auth failed``, 405 ``symbol limit exceeded``, 406 ``connection limit exceeded`` and
409 ``insufficient subscription`` end the source with one line that names the key by its first
characters, never the secret: retrying cannot help (406 means another client holds the feed's
one connection). Others (400, 401, 404 ``auth timeout``, 407 ``slow client``, 410, 500) go to health
and the loop reconnects with backoff.

Why a hand-written client instead of alpaca-py's ``StockDataStream``: the SDK's stream runs its own
asyncio loop and reconnect policy (no jitter, no silence timeout by default, and it retries rejected
credentials for ever), only logs error frames (so a 406 cannot end the feed with one line), and
drops a malformed frame by reconnecting instead of dead-lettering it. This client is the desk's
shared loop (``pipeline/sources/ws.py``: backoff with jitter, resubscribe, silence timeout), as the
crypto streams use. The silence timeout runs only while the NYSE is open, counted from the later of
the last frame and the session's open, so a quiet night is not a dead connection. The SDK does serve
the REST backfill (``pipeline/sources/alpaca_rest.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
from websockets.sync.client import ClientConnection

from pipeline.bus.base import Producer
from pipeline.errors import BadMessageError, ConfigError, PipelineError, Violation
from pipeline.fanout import TradeFanout
from pipeline.sources.alpaca import _WireLog, rfc3339_ms
from pipeline.sources.alpaca_rest import AlpacaBars
from pipeline.sources.stocks import StockFeed
from pipeline.sources.ws import WebSocketSource, dump, number, parse_json, text
from pipeline.stocks.hours import MarketHours
from pipeline.topics import STOCK_PRICES_RAW, STOCK_TRADES_RAW

log = logging.getLogger(__name__)

Feed = Literal["iex", "sip"]
STREAM_URL = "wss://stream.data.alpaca.markets/v2"
CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars")
# Errors the same credentials and settings meet again on every reconnect: the source stops.
FATAL_ERRORS = {
    402: "rejected the credentials",
    405: "says the subscription has more symbols than the plan allows",
    406: "refused a second connection (another client is using this key's one connection)",
    409: "says the subscription does not include this feed",
}


def _mask(key: str) -> str:
    return key[:4] + "…" if len(key) > 4 else "…"


class AlpacaStockStream(WebSocketSource):
    """Alpaca's stock trades, quotes and bars for ``symbols``, through ``StockFeed``."""

    replay = False

    def __init__(
        self,
        producer: Producer,
        fanout: TradeFanout,
        symbols: Iterable[str],
        hours: MarketHours,
        *,
        key: str,
        secret: str,
        feed: Feed = "iex",
        url: str | None = None,
        rest: AlpacaBars | None = None,
        backfill_days: int = 3,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        jitter: float = 0.3,
        healthy_after_s: float = 30.0,
        recv_timeout_s: float = 120.0,
        open_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        name: str = "alpaca-stocks",
    ) -> None:
        if not key or not secret:
            raise ConfigError("alpaca-stocks: an API key and secret are both required")
        super().__init__(
            name,
            producer,
            symbols,
            url=(url or f"{STREAM_URL}/{feed}"),
            clock=clock,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            jitter=jitter,
            healthy_after_s=healthy_after_s,
            recv_timeout_s=recv_timeout_s,
            open_timeout_s=open_timeout_s,
            ws_logger=_WireLog(secret),
        )
        self._key = key
        self._secret = secret
        self.hours = hours
        self.rest = rest
        self.backfill_days = backfill_days
        self.tickers = sorted(self.symbols)
        self.feed = StockFeed(name, producer, fanout, self.symbols, self.health, clock=clock)
        self.quotes: dict[str, dict[str, Any]] = {}
        self.corrections = 0
        self.subscribed: dict[str, list[str]] = {}
        self.backfilled = 0
        self._last_bar: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"AlpacaStockStream(url={self.url!r}, key={_mask(self._key)!r}, symbols={self.tickers!r})"

    def status(self) -> dict[str, Any]:
        market = self.hours.status(datetime.fromtimestamp(self.clock(), tz=UTC))
        return {
            **super().status(),
            **self.feed.status(),
            "market": market.label,
            "subscribed": self.subscribed,
            "quotes": dict(self.quotes),
            "corrections": self.corrections,
            "backfilled": self.backfilled,
        }

    # -- the shared loop's hooks ---------------------------------------------------------------

    def reject(self, raw: Any, exc: BadMessageError | str, *, key: str | None = None) -> None:
        """A frame that could not be read goes to ``stock_trades_raw_dlq`` (bad bars to the bars' one)."""
        self.feed.reject(raw, exc, topic=STOCK_TRADES_RAW, key=key)
        self._dirty = True

    def flush(self, timeout: float = 30.0) -> int:
        return self.feed.flush(timeout)

    def _silence_origin(self, last_rx: float) -> float:
        now = self.clock()
        market = self.hours.status(datetime.fromtimestamp(now, tz=UTC))
        if not market.open or market.opened_at is None:
            return float("inf")  # a closed market is quiet by design
        opened = time.monotonic() - (now - market.opened_at.timestamp())
        return max(last_rx, opened)

    def _scrub(self, value: object) -> str:
        line = " ".join(str(value).split())[:300]
        return line.replace(self._secret, "***") if self._secret else line

    def _on_open(self, ws: ClientConnection) -> None:
        self._expect(ws, "success", "connected")
        ws.send(orjson.dumps({"action": "auth", "key": self._key, "secret": self._secret}).decode())
        self._expect(ws, "success", "authenticated")
        ws.send(orjson.dumps({"action": "subscribe", **dict.fromkeys(CHANNELS, self.tickers)}).decode())
        self._expect(ws, "subscription", None)
        self._backfill()

    def _expect(self, ws: ClientConnection, kind: str, msg: str | None) -> None:
        """Read frames until an item ``{"T": kind, "msg": msg}``; raise on a fatal error."""
        deadline = time.monotonic() + self.open_timeout_s
        while True:
            frame = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(frame, bytes):
                frame = frame.decode("utf-8", "replace")
            try:
                items = parse_json(frame)
            except BadMessageError as exc:
                self.reject(frame, exc)
                continue
            found = False
            for item in items if isinstance(items, list) else [items]:
                t = item.get("T") if isinstance(item, dict) else None
                if t == kind and (msg is None or item.get("msg") == msg):
                    found = True
                    if t == "subscription":
                        self.subscribed = {c: list(item.get(c) or []) for c in CHANNELS}
                elif t == "error":
                    self._error(item)
                elif t not in ("success", "subscription"):
                    self._handle(dump([item]))  # data that came before the handshake ended: keep it
            if found:
                return

    def _error(self, item: dict[str, Any]) -> None:
        code, msg = item.get("code"), self._scrub(item.get("msg", ""))
        if code in FATAL_ERRORS:
            raise ConfigError(f"alpaca {FATAL_ERRORS[code]} for key {_mask(self._key)}: {msg} (code {code})")
        self.health.error(f"{self.name}: alpaca error {code}: {msg}")
        log.error("%s: alpaca error %s: %s", self.name, code, msg)

    # -- frames --------------------------------------------------------------------------------

    def _on_frame(self, frame: str) -> None:
        received_ns = time.time_ns()
        items = parse_json(frame)
        if not isinstance(items, list):
            raise BadMessageError([Violation("frame", frame[:120], "a JSON list of messages")])
        for item in items:
            try:
                self._on_item(item, received_ns)
            except BadMessageError as exc:
                topic = STOCK_PRICES_RAW if isinstance(item, dict) and item.get("T") in ("b", "u", "d") else None
                self.feed.reject(dump(item), exc, topic=topic or STOCK_TRADES_RAW, key=_symbol_of(item))
        self._dirty = True

    def _on_item(self, item: Any, received_ns: int) -> None:
        if not isinstance(item, dict):
            raise BadMessageError([Violation("[]", item, "an object with a type T")])
        kind = item.get("T")
        if kind == "t":
            conditions = item.get("c") or []
            self.feed.trade(
                dump(item),
                symbol=text(item, "S"),
                timestamp=rfc3339_ms(item.get("t")),
                price=number(item, "p"),
                size=number(item, "s"),
                trade_id=int(number(item, "i")),
                exchange=item.get("x") if isinstance(item.get("x"), str) else None,
                conditions=[str(c) for c in conditions] if isinstance(conditions, list) else [],
                tape=item.get("z") if isinstance(item.get("z"), str) else None,
                received_ns=received_ns,
            )
        elif kind in ("b", "u", "d"):
            self._bar(item, "1Day" if kind == "d" else "1Min", replay=False)
        elif kind == "q":
            symbol = text(item, "S")
            self.quotes[symbol] = {
                "bid": number(item, "bp"),
                "ask": number(item, "ap"),
                "bid_size": number(item, "bs"),
                "ask_size": number(item, "as"),
                "time": rfc3339_ms(item.get("t")),
            }
        elif kind in ("c", "x"):
            self.corrections += 1
        elif kind == "error":
            self._error(item)
        elif kind in ("success", "subscription"):
            if kind == "subscription":
                self.subscribed = {c: list(item.get(c) or []) for c in CHANNELS}
            log.debug("%s: %s", self.name, self._scrub(dump(item)))
        elif kind is None:
            raise BadMessageError([Violation("T", None, "a message type")])

    def _bar(self, item: dict[str, Any], timeframe: str, *, replay: bool) -> None:
        symbol = text(item, "S") if "S" in item else str(item.get("symbol", ""))
        start = rfc3339_ms(item.get("t"))
        n = item.get("n")
        vw = item.get("vw")
        bar = self.feed.bar(
            dump(item),
            symbol=symbol,
            start_ms=start,
            open=number(item, "o"),
            high=number(item, "h"),
            low=number(item, "l"),
            close=number(item, "c"),
            volume=number(item, "v"),
            timeframe=timeframe,
            trade_count=int(n) if isinstance(n, (int, float)) else None,
            vwap=float(vw) if isinstance(vw, (int, float)) and vw > 0 else None,
            replay=replay,
        )
        if bar is not None and timeframe == "1Min":
            self._last_bar[symbol] = max(start, self._last_bar.get(symbol, 0))

    # -- backfill ------------------------------------------------------------------------------

    def _backfill(self) -> None:
        """Fetch the minute bars missed since the last one seen (or ``backfill_days`` at start) and
        publish them as a replay; a REST failure is reported in health and the stream goes on."""
        if self.rest is None or not self.tickers:
            return
        now = datetime.fromtimestamp(self.clock(), tz=UTC)
        first = now - timedelta(days=self.backfill_days)
        seen = [self._last_bar.get(s) for s in self.tickers]
        start = first if None in seen else datetime.fromtimestamp((min(s for s in seen if s) + 60_000) / 1000, tz=UTC)
        try:
            bars = self.rest.minute_bars(self.tickers, start)
        except ConfigError:
            raise
        except PipelineError as exc:
            self.health.error(f"{self.name}: backfill from {start.isoformat()} failed: {exc}")
            return
        count = 0
        for symbol, rows in bars.items():
            for row in rows:
                try:
                    self._bar({**row, "S": symbol}, "1Min", replay=True)
                    count += 1
                except BadMessageError as exc:
                    self.feed.reject(dump(row), exc, topic=STOCK_PRICES_RAW, key=symbol)
        self.backfilled += count
        self.feed.flush()
        log.info("%s: backfilled %d minute bars from %s", self.name, count, start.isoformat())


def _symbol_of(item: Any) -> str | None:
    symbol = item.get("S") if isinstance(item, dict) else None
    return symbol if isinstance(symbol, str) else None
