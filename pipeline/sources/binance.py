"""Binance spot market data: the 24 h ticker poller (seed 002's producer) and the WebSocket stream.

``BinanceTickerPoller`` asks ``GET /api/v3/ticker/24hr?symbols=[...]`` once per ``interval_s``
for every configured symbol in one request and publishes one tick per symbol: ``lastPrice``,
``openPrice``, ``highPrice``, ``lowPrice``, ``volume`` (base asset), ``priceChangePercent`` (a
percentage) at ``closeTime``. A symbol whose ``closeTime`` did not move since the last poll
(nothing traded) is skipped, not dead-lettered. 429 and 418 wait at least ``Retry-After``;
5xx, 403 (the WAF limit), timeouts and connection errors back off exponentially.

``BinanceStream`` reads the combined stream ``/stream?streams=<s>@kline_1m/<s>@trade/<s>@miniTicker``
(lowercase symbols, frames wrapped as ``{"stream": ..., "data": ...}``): one tick per trade
(``p``, ``q`` as the tick volume, ``T``), with the 24 h figures of the symbol's latest
``24hrMiniTicker`` (``o``, ``h``, ``l``, ``v``; the change is computed from the trade price and
``o``, since the mini ticker has no percentage). Trades that come before the symbol's first mini
ticker (it follows within a second) are held until it arrives. Closed klines (``k.x``) are used
only to detect gaps. Binance's ping frames are answered by the websockets library.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from pipeline.bus.base import Producer
from pipeline.errors import BadMessageError, ConfigError, TransientError
from pipeline.sources.base import MarketSource
from pipeline.sources.ws import MINUTE_MS, WebSocketSource, number, parse_json, text

log = logging.getLogger(__name__)

TICKER_PATH = "/api/v3/ticker/24hr"
INTERVALS_MS = {"1m": MINUTE_MS, "3m": 3 * MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS}


class RetryableError(TransientError):
    """A failed poll worth retrying soon; ``wait_s`` is the least the server asked us to wait."""

    def __init__(self, reason: str, wait_s: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait_s = wait_s


class RefusedError(ConfigError):
    """A request Binance refused (bad symbol, bad parameter): retrying soon will not help, so the
    poller tries again only at the next interval."""


class BinanceTickerPoller(MarketSource):
    """Polls Binance's 24 h tickers on the source's thread; ``poll_once`` can also be called directly."""

    replay = False

    def __init__(
        self,
        producer: Producer,
        symbols: Iterable[str],
        *,
        base_url: str = "https://api.binance.com",
        interval_s: float = 60.0,
        timeout_s: float = 10.0,
        backoff_s: float = 1.0,
        backoff_max_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        name: str = "binance-rest",
    ) -> None:
        super().__init__(name, producer, symbols, clock=clock)
        self.base_url = base_url.rstrip("/")
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.requests = 0
        self.skipped_unchanged = 0

    def url(self) -> str:
        """Return the one request that asks for every configured symbol."""
        symbols = json.dumps(sorted(self.symbols), separators=(",", ":"))
        return f"{self.base_url}{TICKER_PATH}?{urllib.parse.urlencode({'symbols': symbols})}"

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
                failures = 0
                wait = self.interval_s - (time.monotonic() - started)
            except RetryableError as exc:
                wait = max(exc.wait_s, min(self.backoff_max_s, self.backoff_s * 2 ** min(failures, 32)))
                failures += 1
                self.health.error(f"{self.name} {TICKER_PATH}: {exc.reason}; retry in {wait:.2f} s")
                log.warning("%s %s: %s; retry in %.2f s", self.name, TICKER_PATH, exc.reason, wait)
            except RefusedError as exc:
                wait = self.interval_s
                self.health.error(f"{self.name} {TICKER_PATH}: {exc}")
                log.error("%s %s: %s", self.name, TICKER_PATH, exc)
            self._stop.wait(max(0.0, wait))

    def poll_once(self) -> int:
        """Fetch the tickers once and publish them; return how many ticks were published.
        Raise ``RetryableError`` (back off and retry) or ``RefusedError`` (wait for the next poll)."""
        self.requests += 1
        status, headers, body = self._get(self.url())
        if status in (418, 429):
            raise RetryableError(f"rate limited (HTTP {status})", _retry_after(headers))
        if status >= 500 or status == 403:
            raise RetryableError(f"HTTP {status}")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            if status == 200:
                self.reject(body, "response is not JSON")
                self.flush()
            raise RetryableError(f"HTTP {status}: response is not JSON") from None
        if status != 200:
            code, msg = (payload.get("code"), payload.get("msg")) if isinstance(payload, dict) else (None, payload)
            raise RefusedError(f"refused: {msg} (HTTP {status}, code {code})")
        items = payload if isinstance(payload, list) else [payload]
        with self.health.lock:
            self.health.processed += len(items)
        published = 0
        for item in items:
            published += self._publish(item)
        self.flush()
        return published

    def _get(self, url: str) -> tuple[int, Any, bytes]:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:  # 4xx/5xx carry Binance's JSON and headers
            try:
                body = exc.read()
            except (OSError, http.client.HTTPException):
                body = b""
            return exc.code, exc.headers, body
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise RetryableError(f"{type(exc).__name__}: {reason}") from None

    def _publish(self, item: Any) -> int:
        raw = orjson.dumps(item).decode() if isinstance(item, (dict, list)) else repr(item)
        try:
            symbol = text(item, "symbol")
            close_time = int(number(item, "closeTime"))
            fields = dict(
                price=number(item, "lastPrice"),
                open=number(item, "openPrice"),
                high=number(item, "highPrice"),
                low=number(item, "lowPrice"),
                volume=number(item, "volume"),
                price_change_pct=number(item, "priceChangePercent"),
            )
        except BadMessageError as exc:
            self.reject(raw, exc, key=item.get("symbol") if isinstance(item, dict) else None)
            return 0
        if self._last_ts.get(symbol) == close_time:  # no trade since the last poll: nothing new
            self.skipped_unchanged += 1
            return 0
        return 1 if self.emit(raw, symbol=symbol, timestamp=close_time, **fields) is not None else 0


def _retry_after(headers: Any) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", "0")))
    except (AttributeError, TypeError, ValueError):
        return 0.0


class BinanceStream(WebSocketSource):
    """Binance's combined kline_1m + trade + miniTicker streams for the configured symbols."""

    replay = False

    def __init__(
        self,
        producer: Producer,
        symbols: Iterable[str],
        *,
        url: str = "wss://stream.binance.com:9443",
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        jitter: float = 0.3,
        healthy_after_s: float = 30.0,
        recv_timeout_s: float = 30.0,
        open_timeout_s: float = 10.0,
        coalesce_s: float = 0.1,
        clock: Callable[[], float] = time.time,
        name: str = "binance-ws",
    ) -> None:
        super().__init__(
            name,
            producer,
            symbols,
            url=url,
            clock=clock,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            jitter=jitter,
            healthy_after_s=healthy_after_s,
            recv_timeout_s=recv_timeout_s,
            open_timeout_s=open_timeout_s,
            coalesce_s=coalesce_s,
        )

    def streams(self) -> list[str]:
        """Return the stream names subscribed to, three per symbol."""
        return [f"{s.lower()}@{kind}" for s in sorted(self.symbols) for kind in ("kline_1m", "trade", "miniTicker")]

    def _connect_url(self) -> str:
        return f"{self.url}/stream?streams={'/'.join(self.streams())}"

    def _on_frame(self, frame: str) -> None:
        msg = parse_json(frame)
        if isinstance(msg, dict) and "id" in msg and ("result" in msg or "error" in msg):
            return  # the answer to a live SUBSCRIBE/LIST_SUBSCRIPTIONS request
        if not isinstance(msg, dict) or not isinstance(msg.get("data"), dict) or "stream" not in msg:
            raise BadMessageError('not a combined-stream frame ({"stream": ..., "data": {...}})')
        data = msg["data"]
        event = text(data, "e")
        if event == "trade":
            self._trade(frame, text(data, "s"), int(number(data, "T")), number(data, "p"), number(data, "q"))
        elif event == "24hrMiniTicker":
            self._set_day(
                frame,
                text(data, "s"),
                int(number(data, "E")),
                last=number(data, "c"),
                open=number(data, "o"),
                high=number(data, "h"),
                low=number(data, "l"),
                volume=number(data, "v"),
            )
        elif event == "kline":
            k = data.get("k")
            if not isinstance(k, dict) or not isinstance(k.get("x"), bool):
                raise BadMessageError("kline frame without k.x (is this kline closed?)")
            if k["x"]:
                symbol = text(k, "s")
                if self._known(frame, symbol):
                    self._closed_bar(symbol, int(number(k, "t")), INTERVALS_MS.get(str(k.get("i")), MINUTE_MS))
        else:
            log.debug("%s: ignoring %s event", self.name, event)
