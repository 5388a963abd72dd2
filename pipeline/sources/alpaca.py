"""Alpaca crypto market data over WebSocket (``v1beta3/crypto/us``): trades, minute and daily bars.

Per connection: Alpaca greets with ``[{"T":"success","msg":"connected"}]``; the source sends
``{"action":"auth","key":...,"secret":...}`` and waits for ``[{"T":"success","msg":"authenticated"}]``,
then sends ``{"action":"subscribe","trades":[...],"bars":[...],"dailyBars":[...]}`` with pairs
as Alpaca names them (``BTC/USDT`` for the configured ``BTCUSDT``). Every server message is a
JSON list of items with a type ``T``: ``t`` trade, ``b`` minute bar, ``d`` daily bar,
``subscription``, ``success``, ``error``.

One tick per trade (``p`` price, ``s`` size as the tick volume, ``t`` an RFC-3339 time with
nanoseconds), with the figures of the pair's latest daily bar (``o``, ``h``, ``l``, ``v``). Alpaca's
daily bar runs from the start of its trading day, not over a rolling 24 h, and is pushed after
each minute mark, so trades seen before the first one are held until it comes. Minute bars are
pushed after each minute mark even without trades (quote midpoints), so a missing one is a gap.

Rejected credentials (error 402 ``auth failed``) or a plan without this feed (409 ``insufficient
subscription``) stop the source with one line in its health naming the key by its first
characters: retrying with the same credentials cannot help. Other errors (406 ``connection limit
exceeded``, 404 ``auth timeout``, ...) go to health and the connection is retried with backoff.
The secret never reaches a log line, a health line or ``repr``: the websockets library's log of
these connections never dumps frames.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import orjson
from websockets.sync.client import ClientConnection

from pipeline.bus.base import Producer
from pipeline.errors import BadMessageError, ConfigError, Violation
from pipeline.sources.ws import WebSocketSource, dump, number, parse_json, text

log = logging.getLogger(__name__)

# Errors that the same credentials will meet again on every reconnect: the source stops.
FATAL_ERRORS = {402: "rejected the credentials", 409: "says the subscription does not include this feed"}
QUOTES = ("USDT", "USDC", "USD")


def to_pair(symbol: str) -> str:
    """Return Alpaca's name of a configured symbol: ``BTCUSDT`` -> ``BTC/USDT``."""
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}/{quote}"
    return symbol


def from_pair(pair: str) -> str:
    """Return the configured name of an Alpaca pair: ``BTC/USDT`` -> ``BTCUSDT``."""
    return pair.replace("/", "")


def rfc3339_ms(value: Any, name: str = "t") -> int:
    """Return an RFC-3339 time (nanoseconds allowed) as Unix milliseconds."""
    if not isinstance(value, str):
        raise BadMessageError([Violation(name, value, "an RFC-3339 time")])
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadMessageError([Violation(name, value, "an RFC-3339 time")]) from None
    if when.tzinfo is None:
        raise BadMessageError([Violation(name, value, "an RFC-3339 time with a zone")])
    return int(when.timestamp() * 1000)


def _mask(key: str) -> str:
    return key[:4] + "…" if len(key) > 4 else "…"


class _WireLog(logging.LoggerAdapter):
    """The websockets library's log of one connection: never a frame dump (the auth frame carries
    the secret, and a dump may be cut so the whole secret no longer matches), and any line that
    still holds a fragment of the secret is replaced."""

    def __init__(self, secret: str) -> None:
        super().__init__(logging.getLogger("websockets.client"), {})
        n = min(8, len(secret))
        self._pieces = {secret[i : i + n] for i in range(len(secret) - n + 1)}

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            line = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            line = str(msg)
        if any(piece in line for piece in self._pieces):
            line = "[a websockets log line holding the Alpaca secret was dropped]"
        self.logger.log(level, line, **kwargs)


class AlpacaStream(WebSocketSource):
    """Alpaca's crypto trades, bars and daily bars for the configured symbols."""

    replay = False

    def __init__(
        self,
        producer: Producer,
        symbols: Iterable[str],
        *,
        key: str,
        secret: str,
        url: str = "wss://stream.data.alpaca.markets/v1beta3/crypto/us",
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        jitter: float = 0.3,
        healthy_after_s: float = 30.0,
        recv_timeout_s: float = 150.0,
        open_timeout_s: float = 10.0,
        coalesce_s: float = 0.1,
        clock: Callable[[], float] = time.time,
        name: str = "alpaca-ws",
    ) -> None:
        if not key or not secret:
            raise ConfigError("alpaca: an API key and secret are both required")
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
            ws_logger=_WireLog(secret),
        )
        self._key = key
        self._secret = secret
        self.pairs = sorted(to_pair(s) for s in self.symbols)

    def __repr__(self) -> str:
        return f"AlpacaStream(url={self.url!r}, key={_mask(self._key)!r}, pairs={self.pairs!r})"

    def _scrub(self, value: object) -> str:
        line = " ".join(str(value).split())[:300]
        return line.replace(self._secret, "***") if self._secret else line

    def _on_open(self, ws: ClientConnection) -> None:
        self._expect(ws, "connected")
        ws.send(orjson.dumps({"action": "auth", "key": self._key, "secret": self._secret}).decode())
        self._expect(ws, "authenticated")
        ws.send(
            orjson.dumps(
                {"action": "subscribe", "trades": self.pairs, "bars": self.pairs, "dailyBars": self.pairs}
            ).decode()
        )

    def _expect(self, ws: ClientConnection, what: str) -> None:
        """Read control messages until ``{"T":"success","msg":what}``; raise on an error."""
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
            for item in items if isinstance(items, list) else [items]:
                kind = item.get("T") if isinstance(item, dict) else None
                if kind == "success" and item.get("msg") == what:
                    return
                if kind == "error":
                    self._error(item)
                elif kind not in ("success", "subscription"):
                    self._handle(dump([item]))  # data before the handshake ended: keep it

    def _error(self, item: dict[str, Any]) -> None:
        code, msg = item.get("code"), self._scrub(item.get("msg", ""))
        if code in FATAL_ERRORS:
            raise ConfigError(f"alpaca {FATAL_ERRORS[code]} for key {_mask(self._key)}: {msg} (code {code})")
        self.health.error(f"{self.name}: alpaca error {code}: {msg}")
        log.error("%s: alpaca error %s: %s", self.name, code, msg)

    def _on_frame(self, frame: str) -> None:
        items = parse_json(frame)
        if not isinstance(items, list):
            raise BadMessageError("frame is not a JSON list of messages")
        for item in items:
            try:
                self._on_item(item)
            except BadMessageError as exc:
                self.reject(dump(item), exc)

    def _on_item(self, item: Any) -> None:
        if not isinstance(item, dict):
            raise BadMessageError([Violation("[]", item, "an object with a type T")])
        kind = item.get("T")
        if kind == "t":
            self._trade(
                dump(item), from_pair(text(item, "S")), rfc3339_ms(item.get("t")), number(item, "p"), number(item, "s")
            )
        elif kind == "d":
            self._set_day(
                dump(item),
                from_pair(text(item, "S")),
                rfc3339_ms(item.get("t")),
                last=number(item, "c"),
                open=number(item, "o"),
                high=number(item, "h"),
                low=number(item, "l"),
                volume=number(item, "v"),
            )
        elif kind == "b":
            symbol = from_pair(text(item, "S"))
            if self._known(dump(item), symbol):
                self._closed_bar(symbol, rfc3339_ms(item.get("t")))
        elif kind == "error":
            self._error(item)
        elif kind in ("success", "subscription"):
            log.debug("%s: %s", self.name, self._scrub(dump(item)))
        elif kind is None:
            raise BadMessageError([Violation("T", None, "a message type")])
