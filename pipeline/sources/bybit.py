"""Bybit v5 public spot WebSocket: ``tickers``, ``publicTrade`` and ``kline.1`` per symbol.

On every connection the source sends ``{"op": "subscribe", "args": [...]}`` (at most 10 args
per request, Bybit's limit for spot) and then ``{"op": "ping"}`` every ``ping_interval_s``
(Bybit recommends 20 s); Bybit answers ``{"success": true, "ret_msg": "pong", "op": "ping"}``.
A connection silent for ``recv_timeout_s`` (no data and no pong) is dropped and reopened.

One tick per trade of ``publicTrade.<symbol>`` (``p`` price, ``v`` size as the tick volume,
``T`` time), with the 24 h figures of the symbol's latest spot ``tickers`` snapshot:
``prevPrice24h`` as the open, ``highPrice24h``, ``lowPrice24h``, ``volume24h`` (base asset). The
change is computed from the trade price and ``prevPrice24h``; ``price24hPcnt`` is a fraction
(``"-0.0049"`` is -0.49 %) and only stands in for a missing ``prevPrice24h``. Spot tickers are
snapshots only, so each one is complete. Confirmed ``kline.1`` candles detect gaps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from websockets.sync.client import ClientConnection

from pipeline.bus.base import Producer
from pipeline.errors import BadMessageError, Violation
from pipeline.sources.ws import WebSocketSource, dump, number, parse_json, text

log = logging.getLogger(__name__)

MAX_ARGS = 10  # spot accepts at most 10 args per subscribe request


class BybitStream(WebSocketSource):
    """Bybit v5 spot public streams for the configured symbols (``BTCUSDT`` style, as Bybit names them)."""

    replay = False

    def __init__(
        self,
        producer: Producer,
        symbols: Iterable[str],
        *,
        url: str = "wss://stream.bybit.com/v5/public/spot",
        ping_interval_s: float = 20.0,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        jitter: float = 0.3,
        healthy_after_s: float = 30.0,
        recv_timeout_s: float = 45.0,
        open_timeout_s: float = 10.0,
        coalesce_s: float = 0.1,
        clock: Callable[[], float] = time.time,
        name: str = "bybit-ws",
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
            heartbeat_s=ping_interval_s,
            open_timeout_s=open_timeout_s,
            coalesce_s=coalesce_s,
        )
        self.ping_interval_s = ping_interval_s
        self.pings = 0
        self.pongs = 0

    def topics(self) -> list[str]:
        """Return the topics subscribed to, three per symbol."""
        return [f"{kind}.{s}" for s in sorted(self.symbols) for kind in ("tickers", "publicTrade", "kline.1")]

    def _on_open(self, ws: ClientConnection) -> None:
        topics = self.topics()
        for i in range(0, len(topics), MAX_ARGS):
            ws.send(
                orjson.dumps(
                    {"req_id": f"sub-{i // MAX_ARGS + 1}", "op": "subscribe", "args": topics[i : i + MAX_ARGS]}
                ).decode()
            )

    def _heartbeat(self, ws: ClientConnection) -> None:
        ws.send('{"op":"ping"}')
        self.pings += 1

    def _on_frame(self, frame: str) -> None:
        msg = parse_json(frame)
        if not isinstance(msg, dict):
            raise BadMessageError("frame is not a JSON object")
        if "op" in msg:
            self._on_reply(msg)
            return
        topic = text(msg, "topic")
        kind, _, symbol = topic.rpartition(".")
        data = msg.get("data")
        if kind == "tickers":
            if not isinstance(data, dict):
                raise BadMessageError([Violation("data", data, "an object (spot tickers are snapshots)")])
            self._ticker(frame, data, int(number(msg, "ts")))
        elif kind == "publicTrade":
            for item in self._items(data):
                self._item(
                    item,
                    lambda it: self._trade(
                        dump(it), text(it, "s"), int(number(it, "T")), number(it, "p"), number(it, "v")
                    ),
                )
        elif kind == "kline.1":
            if self._known(frame, symbol):
                for item in self._items(data):
                    self._item(
                        item,
                        lambda it: (
                            self._closed_bar(symbol, int(number(it, "start"))) if it.get("confirm") is True else None
                        ),
                    )
        else:
            log.debug("%s: ignoring topic %s", self.name, topic)

    def _on_reply(self, msg: dict[str, Any]) -> None:
        op, ok, ret = msg.get("op"), msg.get("success"), msg.get("ret_msg")
        if op in ("ping", "pong"):
            self.pongs += 1
        elif op == "subscribe" and ok is not True:
            self.health.error(f"{self.name}: subscribe refused: {ret}")
            log.error("%s: subscribe refused: %s", self.name, ret)

    def _ticker(self, frame: str, d: dict[str, Any], ts: int) -> None:
        symbol = text(d, "symbol")
        last = number(d, "lastPrice")
        if d.get("prevPrice24h") not in (None, ""):
            open_ = number(d, "prevPrice24h")
        else:  # price24hPcnt is a fraction of the price 24 h ago
            open_ = last / (1 + number(d, "price24hPcnt"))
        self._set_day(
            frame,
            symbol,
            ts,
            last=last,
            open=open_,
            high=number(d, "highPrice24h"),
            low=number(d, "lowPrice24h"),
            volume=number(d, "volume24h"),
        )

    @staticmethod
    def _items(data: Any) -> list[Any]:
        if not isinstance(data, list):
            raise BadMessageError([Violation("data", data, "a list")])
        return data

    def _item(self, item: Any, handle: Callable[[Any], object]) -> None:
        """Handle one item of a frame's list; a bad item is dead-lettered alone."""
        try:
            if not isinstance(item, dict):
                raise BadMessageError([Violation("data[]", item, "an object")])
            handle(item)
        except BadMessageError as exc:
            self.reject(dump(item), exc)
