"""Local stand-ins for Alpaca's market data v2 for stocks, speaking its documented formats.

* ``FakeAlpacaStocksWs``: the stream at ``/v2/iex`` (or ``/v2/sip``): greets with ``connected``,
  checks ``auth`` (``402 auth failed`` and a close on bad credentials), answers ``subscribe`` with the
  whole ``subscription`` list (trades, quotes, bars, updatedBars, dailyBars, statuses, lulds and the
  corrections and cancelErrors that follow trades), and can refuse a connection with
  ``406 connection limit exceeded`` after authenticating. Scripting as the crypto fakes
  (``send``, ``drop``, ``go_silent``; ``tests/fakes/market_servers.py``).
* ``FakeAlpacaBarsRest``: ``GET /v2/stocks/bars`` with the ``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY``
  headers (403 ``forbidden`` otherwise), ``symbols``, ``timeframe``, ``start``, ``end``, ``limit`` and
  ``page_token``; answers ``{"bars": {symbol: [...]}, "next_page_token": ...}`` a page at a time.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from websockets.sync.server import ServerConnection

from tests.fakes.http import LocalHttpFake
from tests.fakes.market_servers import FakeAlpacaWs, SeenRequest, WsConnection, rfc3339

STOCK_CHANNELS = (
    "trades",
    "quotes",
    "bars",
    "updatedBars",
    "dailyBars",
    "statuses",
    "lulds",
    "corrections",
    "cancelErrors",
)


def iso_z(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stock_trade(symbol: str, price: float, size: float, *, ts: int, trade_id: int = 1) -> dict[str, Any]:
    """A ``t`` message as Alpaca's stock stream sends it."""
    return {
        "T": "t",
        "i": trade_id,
        "S": symbol,
        "x": "V",
        "p": price,
        "s": size,
        "t": rfc3339(ts, 208),
        "c": ["@"],
        "z": "C",
    }


def stock_quote(symbol: str, *, ts: int, bid: float = 10.0, ask: float = 10.02) -> dict[str, Any]:
    return {
        "T": "q",
        "S": symbol,
        "bx": "V",
        "bp": bid,
        "bs": 1,
        "ax": "V",
        "ap": ask,
        "as": 4,
        "t": rfc3339(ts, 322),
        "c": ["R"],
        "z": "C",
    }


def stock_bar(
    symbol: str,
    t_ms: int,
    *,
    kind: str = "b",
    o: float = 10,
    h: float = 10.5,
    l: float = 9.5,  # noqa: E741 - Alpaca's own field name for the low
    c: float = 10.2,
    v: float = 300,
) -> dict[str, Any]:
    """A ``b`` (minute), ``u`` (updated minute) or ``d`` (daily) bar; ``t`` is its start."""
    return {
        "T": kind,
        "S": symbol,
        "o": o,
        "h": h,
        "l": l,
        "c": c,
        "v": v,
        "t": iso_z(t_ms),
        "n": 12,
        "vw": round((h + l) / 2, 4),
    }


def rest_bar(t_ms: int, price: float) -> dict[str, Any]:
    return {
        "t": iso_z(t_ms),
        "o": price,
        "h": price + 0.5,
        "l": price - 0.5,
        "c": price + 0.1,
        "v": 1000,
        "n": 20,
        "vw": price,
    }


class FakeAlpacaStocksWs(FakeAlpacaWs):
    """Alpaca's v2 stock stream (``/v2/iex``)."""

    path = "/v2/iex"
    CHANNELS = STOCK_CHANNELS  # type: ignore[assignment]  # the stock stream has more channels than crypto

    def __init__(self, key: str, secret: str) -> None:
        super().__init__(key, secret)
        self.connection_limit = False  # answer a good auth with 406 and close, as Alpaca does for a second connection

    def on_message(self, ws: ServerConnection, conn: WsConnection, msg: Any) -> None:
        good = isinstance(msg, dict) and msg.get("key") == self.key and msg.get("secret") == self.secret
        if isinstance(msg, dict) and msg.get("action") == "auth" and self.connection_limit and good:
            ws.send('[{"T":"error","code":406,"msg":"connection limit exceeded"}]')
            ws.close(1008, "connection limit exceeded")
            return
        if isinstance(msg, dict) and msg.get("action") == "subscribe" and msg.get("trades"):
            msg = {**msg, "corrections": msg["trades"], "cancelErrors": msg["trades"]}
        super().on_message(ws, conn, msg)


class FakeAlpacaBarsRest(LocalHttpFake):
    """``GET /v2/stocks/bars`` with page tokens; ``bars`` maps symbol -> Alpaca bar dicts (by time)."""

    def __init__(self, key: str, secret: str, bars: dict[str, list[dict[str, Any]]], *, page_size: int = 3) -> None:
        self.key, self.secret = key, secret
        self.bars = bars
        self.page_size = page_size
        self.requests: list[SeenRequest] = []
        self._lock = threading.Lock()
        super().__init__()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        import time

        parts = urllib.parse.urlsplit(h.path)
        p = dict(urllib.parse.parse_qsl(parts.query))
        with self._lock:
            self.requests.append(SeenRequest(parts.path, p, time.monotonic()))
        if parts.path != "/v2/stocks/bars":
            return self._reply(h, 404, {"message": "Not Found"})
        if h.headers.get("APCA-API-KEY-ID") != self.key or h.headers.get("APCA-API-SECRET-KEY") != self.secret:
            return self._reply(h, 403, {"message": "forbidden"})
        if p.get("timeframe") not in ("1Min", "1Day") or "start" not in p:
            return self._reply(h, 400, {"code": 42210000, "message": "invalid timeframe or start"})
        start = datetime.fromisoformat(p["start"].replace("Z", "+00:00"))
        limit = min(int(p.get("limit") or 1000), self.page_size)
        rows = [
            (s, b)
            for s in sorted(p.get("symbols", "").split(","))
            for b in self.bars.get(s, [])
            if datetime.fromisoformat(b["t"].replace("Z", "+00:00")) >= start
        ]
        offset = int(base64.b64decode(p["page_token"]).decode()) if p.get("page_token") else 0
        page = rows[offset : offset + limit]
        out: dict[str, list[dict[str, Any]]] = {}
        for s, b in page:
            out.setdefault(s, []).append(b)
        nxt = offset + limit
        token = base64.b64encode(str(nxt).encode()).decode() if nxt < len(rows) else None
        return self._reply(h, 200, {"bars": out, "next_page_token": token})

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
