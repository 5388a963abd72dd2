"""Local stand-ins for the exchanges' public market-data endpoints, on 127.0.0.1 (port 0).

* ``FakeBinanceRest``: ``GET /api/v3/ticker/24hr`` (``symbol=`` or ``symbols=[...]``) answering
  Binance's FULL ticker objects, ``-1121 Invalid symbol.`` for an unknown symbol, and told to
  fail the next N requests (429/418 with ``Retry-After``, 500 with an HTML page).
* ``FakeBinanceWs``: the combined stream endpoint ``/stream?streams=...``; frames go out wrapped
  as ``{"stream": ..., "data": ...}``; the requested streams are recorded per connection.
* ``FakeBybitWs``: v5 public spot; answers ``subscribe`` (at most 10 args, as spot allows) and
  ``{"op":"ping"}`` with the documented replies; records topics and ping times.
* ``FakeAlpacaWs``: crypto v1beta3; greets, checks ``auth`` (402 ``auth failed`` and a close on
  bad credentials), answers ``subscribe`` with the whole subscription list.

Every WebSocket fake is scriptable from the test: ``send`` a frame (a dict/list as JSON, a str as
is: malformed frames too), ``drop`` the live connection, ``go_silent`` (keep it open, send and
answer nothing), ``drop_next_connections(n)`` (accept then close at once), and ``connections``
records what each connection sent, when. Builders below make frames with the exchanges' field
names (numbers as strings where the exchange sends strings); pass current timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from tests.fakes.http import LocalHttpFake


def now_ms() -> int:
    return int(time.time() * 1000)


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------- frames: Binance


def binance_ticker_24hr(
    symbol: str,
    *,
    last: str,
    open: str,
    high: str,
    low: str,
    volume: str,
    pct: str | None = None,
    close_time: int | None = None,
) -> dict[str, Any]:
    """One FULL ``GET /api/v3/ticker/24hr`` object."""
    close_time = close_time or now_ms()
    change = float(last) - float(open)
    return {
        "symbol": symbol,
        "priceChange": f"{change:.8f}",
        "priceChangePercent": pct if pct is not None else f"{change / float(open) * 100:.3f}",
        "weightedAvgPrice": last,
        "prevClosePrice": open,
        "lastPrice": last,
        "lastQty": "0.01000000",
        "bidPrice": last,
        "bidQty": "1.00000000",
        "askPrice": last,
        "askQty": "1.00000000",
        "openPrice": open,
        "highPrice": high,
        "lowPrice": low,
        "volume": volume,
        "quoteVolume": f"{float(volume) * float(last):.8f}",
        "openTime": close_time - 86_400_000,
        "closeTime": close_time,
        "firstId": 28385,
        "lastId": 28460,
        "count": 76,
    }


def binance_trade(symbol: str, price: str, qty: str, *, ts: int | None = None, trade_id: int = 1) -> dict[str, Any]:
    """A ``<symbol>@trade`` payload."""
    ts = ts or now_ms()
    return {"e": "trade", "E": ts + 1, "s": symbol, "t": trade_id, "p": price, "q": qty, "T": ts, "m": True, "M": True}


def binance_mini_ticker(
    symbol: str, *, close: str, open: str, high: str, low: str, volume: str, ts: int | None = None
) -> dict[str, Any]:
    """A ``<symbol>@miniTicker`` payload."""
    return {
        "e": "24hrMiniTicker",
        "E": ts or now_ms(),
        "s": symbol,
        "c": close,
        "o": open,
        "h": high,
        "l": low,
        "v": volume,
        "q": f"{float(volume) * float(close):.8f}",
    }


def binance_kline(
    symbol: str,
    open_ms: int,
    *,
    closed: bool,
    o: str = "10",
    c: str = "10",
    h: str = "10",
    l: str = "10",  # noqa: E741 - Binance's own field name for the low
    v: str = "1",
) -> dict[str, Any]:
    """A ``<symbol>@kline_1m`` payload for the minute opening at ``open_ms``."""
    return {
        "e": "kline",
        "E": now_ms(),
        "s": symbol,
        "k": {
            "t": open_ms,
            "T": open_ms + 59_999,
            "s": symbol,
            "i": "1m",
            "f": 100,
            "L": 200,
            "o": o,
            "c": c,
            "h": h,
            "l": l,
            "v": v,
            "n": 100,
            "x": closed,
            "q": "1.0000",
            "V": "500",
            "Q": "0.500",
            "B": "123456",
        },
    }


def combined(payload: dict[str, Any]) -> dict[str, Any]:
    """Wrap a raw payload as the combined endpoint sends it."""
    kind = {"trade": "trade", "24hrMiniTicker": "miniTicker", "kline": "kline_1m"}[payload["e"]]
    return {"stream": f"{payload['s'].lower()}@{kind}", "data": payload}


# --------------------------------------------------------------------------- frames: Bybit


def bybit_ticker(
    symbol: str,
    *,
    last: str,
    high: str,
    low: str,
    prev: str | None,
    volume: str,
    pcnt: str | None = None,
    ts: int | None = None,
) -> dict[str, Any]:
    """A spot ``tickers.<symbol>`` snapshot (``price24hPcnt`` is a fraction, 4 decimals)."""
    data = {
        "symbol": symbol,
        "lastPrice": last,
        "highPrice24h": high,
        "lowPrice24h": low,
        "prevPrice24h": prev,
        "volume24h": volume,
        "turnover24h": f"{float(volume) * float(last):.6f}",
        "price24hPcnt": pcnt if pcnt is not None else f"{float(last) / float(prev or last) - 1:.4f}",
    }
    if prev is None:
        del data["prevPrice24h"]
    return {"topic": f"tickers.{symbol}", "ts": ts or now_ms(), "type": "snapshot", "cs": 496622841, "data": data}


def bybit_trades(symbol: str, trades: list[tuple[int, str, str]], *, ts: int | None = None) -> dict[str, Any]:
    """A ``publicTrade.<symbol>`` frame; each trade is (time ms, price, size)."""
    return {
        "topic": f"publicTrade.{symbol}",
        "type": "snapshot",
        "ts": ts or now_ms(),
        "data": [
            {
                "T": t,
                "s": symbol,
                "S": "Buy" if i % 2 else "Sell",
                "v": size,
                "p": price,
                "i": str(uuid.uuid4()),
                "BT": False,
            }
            for i, (t, price, size) in enumerate(trades)
        ],
    }


def bybit_kline(symbol: str, start: int, *, confirm: bool, price: str = "10") -> dict[str, Any]:
    """A ``kline.1.<symbol>`` frame for the minute starting at ``start``."""
    return {
        "topic": f"kline.1.{symbol}",
        "type": "snapshot",
        "ts": now_ms(),
        "data": [
            {
                "start": start,
                "end": start + 59_999,
                "interval": "1",
                "open": price,
                "close": price,
                "high": price,
                "low": price,
                "volume": "2.081",
                "turnover": "34666.4005",
                "confirm": confirm,
                "timestamp": now_ms(),
            }
        ],
    }


# --------------------------------------------------------------------------- frames: Alpaca


def rfc3339(ms: int, nanos: int = 0) -> str:
    """``2024-03-12T10:27:48.858228144Z`` style, as Alpaca stamps trades."""
    base = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{(ms % 1000) * 1_000_000 + nanos:09d}Z"


def alpaca_trade(pair: str, price: float, size: float, *, ts: int | None = None, trade_id: int = 1) -> dict[str, Any]:
    return {"T": "t", "S": pair, "p": price, "s": size, "t": rfc3339(ts or now_ms(), 144), "i": trade_id, "tks": "B"}


def alpaca_bar(
    pair: str,
    t_ms: int,
    *,
    kind: str = "b",
    o: float = 10,
    h: float = 10,
    l: float = 10,  # noqa: E741 - the feed's own field name for the low
    c: float = 10,
    v: float = 1,
) -> dict[str, Any]:
    """A minute bar (``kind="b"``) or daily bar (``"d"``); ``t`` is the bar's start."""
    return {
        "T": kind,
        "S": pair,
        "o": o,
        "h": h,
        "l": l,
        "c": c,
        "v": v,
        "t": datetime.fromtimestamp(t_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "n": 93,
        "vw": (h + l) / 2,
    }


# --------------------------------------------------------------------------- Binance REST


@dataclass(frozen=True)
class SeenRequest:
    path: str
    params: dict[str, str]
    at: float  # time.monotonic()


class FakeBinanceRest(LocalHttpFake):
    """``GET /api/v3/ticker/24hr`` over stdlib HTTP; use as a context manager."""

    PATH = "/api/v3/ticker/24hr"

    def __init__(self, *tickers: dict[str, Any]) -> None:
        self.tickers: dict[str, dict[str, Any]] = {t["symbol"]: t for t in tickers}
        self.requests: list[SeenRequest] = []
        self._failures: deque[tuple[int, float | None]] = deque()
        self._lock = threading.Lock()
        super().__init__()

    def set_ticker(self, ticker: dict[str, Any]) -> None:
        with self._lock:
            self.tickers[ticker["symbol"]] = ticker

    def fail_next(self, n: int, status: int = 500, retry_after: float | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (and ``Retry-After`` when given)."""
        with self._lock:
            self._failures.extend((status, retry_after) for _ in range(n))

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(h.path)
        params = dict(urllib.parse.parse_qsl(parts.query))
        with self._lock:
            self.requests.append(SeenRequest(parts.path, params, time.monotonic()))
            failure = self._failures.popleft() if self._failures else None
            tickers = dict(self.tickers)
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            if status >= 500:
                self._reply(
                    h, status, b"<html><body><h1>500 Internal Server Error</h1></body></html>", headers, "text/html"
                )
            else:
                body = {
                    "code": -1003,
                    "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests "
                    "per minute. Please use the websocket for live updates to avoid "
                    "polling the API.",
                }
                self._reply(h, status, json.dumps(body).encode(), headers)
            return
        status, payload = self._answer(parts.path, params, tickers)
        self._reply(
            h,
            status,
            json.dumps(payload, separators=(",", ":")).encode(),
            {"x-mbx-used-weight-1m": str(len(self.requests))},
        )

    def _answer(self, path: str, p: dict[str, str], tickers: dict[str, dict[str, Any]]) -> tuple[int, Any]:
        if path != self.PATH:
            return 404, {"code": -1, "msg": "Not found"}
        if "symbol" in p and "symbols" in p:
            return 400, {"code": -1128, "msg": "Combination of optional parameters invalid."}
        if "symbol" in p:
            if p["symbol"] not in tickers:
                return 400, {"code": -1121, "msg": "Invalid symbol."}
            return 200, tickers[p["symbol"]]
        if "symbols" in p:
            try:
                wanted = json.loads(p["symbols"])
            except json.JSONDecodeError:
                return 400, {"code": -1100, "msg": "Illegal characters found in parameter 'symbols'."}
            if any(s not in tickers for s in wanted):
                return 400, {"code": -1121, "msg": "Invalid symbol."}
            return 200, [tickers[s] for s in wanted]
        return 200, list(tickers.values())

    @staticmethod
    def _reply(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str],
        content_type: str = "application/json;charset=UTF-8",
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)


# --------------------------------------------------------------------------- WebSocket plumbing


@dataclass
class WsConnection:
    """One client connection as the fake saw it."""

    path: str
    opened_at: float
    received: list[tuple[float, Any]] = field(default_factory=list)  # (monotonic time, JSON or raw text)
    closed_at: float | None = None
    silent: bool = False
    drop_requested: bool = False
    outbox: queue.Queue[str] = field(default_factory=queue.Queue)
    state: dict[str, Any] = field(default_factory=dict)

    def sent(self, predicate: Callable[[Any], bool] = lambda m: True) -> list[Any]:
        return [m for _, m in list(self.received) if predicate(m)]


class _FakeWsServer:
    """The threaded server under every WebSocket fake; subclasses answer the protocol."""

    path = ""

    def __init__(self) -> None:
        self.connections: list[WsConnection] = []
        self._lock = threading.Lock()
        self._drop_next = 0
        self._closing = False
        self._server = serve(self._handler, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}{self.path}"

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing = True
        self._server.shutdown()

    # -- scripting ---------------------------------------------------------------------------------

    @property
    def live(self) -> WsConnection | None:
        with self._lock:
            open_ = [c for c in self.connections if c.closed_at is None and not c.drop_requested]
        return open_[-1] if open_ else None

    def wait_live(self, timeout: float = 5.0) -> WsConnection:
        return wait_for(lambda: self.live, timeout, "a live connection")

    def send(self, *frames: Any) -> None:
        """Send frames on the live connection (waiting for one): dicts/lists as JSON, str as is."""
        conn = self.wait_live()
        for frame in frames:
            conn.outbox.put(frame if isinstance(frame, str) else json.dumps(frame, separators=(",", ":")))

    def drop(self) -> None:
        """Close the live connection after the frames already sent (a clean close frame, as a
        server restart would send)."""
        conn = self.wait_live()
        conn.drop_requested = True
        wait_for(lambda: conn.closed_at is not None, 5.0, "the connection to close")

    def go_silent(self) -> None:
        """Keep the live connection open but send and answer nothing on it."""
        self.wait_live().silent = True

    def drop_next_connections(self, n: int) -> None:
        """Accept the next ``n`` connections and close each at once."""
        with self._lock:
            self._drop_next += n

    def opened(self) -> list[float]:
        with self._lock:
            return [c.opened_at for c in self.connections]

    # -- serving -----------------------------------------------------------------------------------

    def _handler(self, ws: ServerConnection) -> None:
        conn = WsConnection(ws.request.path if ws.request else "", time.monotonic())
        with self._lock:
            self.connections.append(conn)
            drop_now = self._drop_next > 0
            self._drop_next -= 1 if drop_now else 0
        try:
            if drop_now:
                ws.close(1011, "unexpected condition")
                return
            self.on_connect(ws, conn)
            while not self._closing:
                while not conn.silent:  # what was sent before a drop goes out first
                    try:
                        ws.send(conn.outbox.get_nowait())
                    except queue.Empty:
                        break
                if conn.drop_requested:
                    ws.close(1001, "going away")
                    return
                try:
                    raw = ws.recv(timeout=0.01)
                except TimeoutError:
                    continue
                try:
                    msg: Any = json.loads(raw)
                except (json.JSONDecodeError, TypeError):
                    msg = raw
                conn.received.append((time.monotonic(), msg))
                if not conn.silent:
                    self.on_message(ws, conn, msg)
        except ConnectionClosed:
            pass
        finally:
            conn.closed_at = time.monotonic()

    def on_connect(self, ws: ServerConnection, conn: WsConnection) -> None:
        """Greet a new connection."""

    def on_message(self, ws: ServerConnection, conn: WsConnection, msg: Any) -> None:
        """Answer what the client sent."""


class FakeBinanceWs(_FakeWsServer):
    """Binance's combined-stream endpoint; ``url`` is the base (the client adds ``/stream?streams=``)."""

    @staticmethod
    def streams(conn: WsConnection) -> list[str]:
        parts = urllib.parse.urlsplit(conn.path)
        value = urllib.parse.parse_qs(parts.query).get("streams", [""])[0] if parts.path == "/stream" else ""
        return [s for s in value.split("/") if s]

    def send_event(self, *payloads: dict[str, Any]) -> None:
        self.send(*(combined(p) for p in payloads))


class FakeBinanceUserWs(_FakeWsServer):
    """Binance's user data stream: a client connects to ``/ws/<listenKey>`` and is sent events."""


def execution_report(
    trade_id: int,
    *,
    symbol: str = "BTCUSDT",
    side: str = "BUY",
    price: str = "68000.00",
    qty: str = "0.00100000",
    commission: str = "0.00000100",
    commission_asset: str = "BTC",
    ts: int | None = None,
    order_id: int = 4_242_001,
) -> dict[str, Any]:
    """An ``executionReport`` of a TRADE, with Binance's field names (numbers as strings)."""
    t = ts if ts is not None else now_ms()
    return {
        "e": "executionReport",
        "E": t + 1,
        "s": symbol,
        "c": "web_4f0c8e2d9b1a",
        "S": side,
        "o": "LIMIT",
        "f": "GTC",
        "q": qty,
        "p": price,
        "P": "0.00000000",
        "F": "0.00000000",
        "g": -1,
        "C": "",
        "x": "TRADE",
        "X": "FILLED",
        "r": "NONE",
        "i": order_id,
        "l": qty,
        "z": qty,
        "L": price,
        "n": commission,
        "N": commission_asset,
        "T": t,
        "t": trade_id,
        "I": 8_100_000 + trade_id,
        "w": False,
        "m": False,
        "M": True,
        "O": t - 5,
        "Z": f"{float(price) * float(qty):.8f}",
        "Y": f"{float(price) * float(qty):.8f}",
        "Q": "0.00000000",
        "W": t - 5,
        "V": "EXPIRE_MAKER",
    }


class FakeBybitPrivateWs(_FakeWsServer):
    """Bybit v5 private stream: ``op: auth`` checked as Bybit does (``HMAC-SHA256(secret,
    "GET/realtime" + expires)``, expires not past), ``subscribe`` and ``ping`` answered."""

    path = "/v5/private"

    def __init__(self, api_key: str, api_secret: str) -> None:
        super().__init__()
        self.api_key, self.api_secret = api_key, api_secret

    def on_connect(self, ws: ServerConnection, conn: WsConnection) -> None:
        conn.state.update(conn_id=str(uuid.uuid4()), topics=[], authed=False)

    def on_message(self, ws: ServerConnection, conn: WsConnection, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        op, base = msg.get("op"), {"conn_id": conn.state["conn_id"], "req_id": msg.get("req_id", "")}
        if op == "auth":
            key, expires, sign = [*list(msg.get("args") or []), None, None, None][:3]
            want = hmac.new(self.api_secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
            ok = key == self.api_key and isinstance(expires, int) and expires > now_ms() and sign == want
            conn.state["authed"] = ok
            reply = {"success": ok, "ret_msg": "" if ok else "Invalid apikey or signature", "op": "auth", **base}
            ws.send(json.dumps(reply))
        elif op == "subscribe":
            ok = bool(conn.state["authed"])
            if ok:
                conn.state["topics"].extend(msg.get("args") or [])
            ws.send(json.dumps({"success": ok, "ret_msg": "" if ok else "Request not authorized", "op": op, **base}))
        elif op == "ping":
            ws.send(json.dumps({"op": "pong", "args": [str(now_ms())], **base}))

    def send_executions(self, *executions: dict[str, Any]) -> None:
        """Send one ``execution`` message (to a connection that subscribed) holding ``executions``."""
        wait_for(lambda: self.live and "execution" in self.live.state.get("topics", []), 5.0, "a subscription")
        self.send({"id": uuid.uuid4().hex, "topic": "execution", "creationTime": now_ms(), "data": list(executions)})


class FakeBybitWs(_FakeWsServer):
    """Bybit v5 public spot."""

    path = "/v5/public/spot"

    def on_connect(self, ws: ServerConnection, conn: WsConnection) -> None:
        conn.state.update(conn_id=str(uuid.uuid4()), topics=[], pings=[])

    def on_message(self, ws: ServerConnection, conn: WsConnection, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        reply: dict[str, Any] = {"conn_id": conn.state["conn_id"]}
        if "req_id" in msg:
            reply["req_id"] = msg["req_id"]
        if msg.get("op") == "ping":
            conn.state["pings"].append(time.monotonic())
            ws.send(json.dumps({"success": True, "ret_msg": "pong", **reply, "op": "ping"}))
        elif msg.get("op") == "subscribe":
            args = msg.get("args") or []
            if len(args) > 10:
                ws.send(json.dumps({"success": False, "ret_msg": "args size >10", **reply, "op": "subscribe"}))
                return
            conn.state["topics"].extend(args)
            ws.send(json.dumps({"success": True, "ret_msg": "subscribe", **reply, "op": "subscribe"}))

    @staticmethod
    def topics(conn: WsConnection) -> list[str]:
        return list(conn.state.get("topics", []))

    @staticmethod
    def pings(conn: WsConnection) -> list[float]:
        return list(conn.state.get("pings", []))


class FakeAlpacaWs(_FakeWsServer):
    """Alpaca crypto v1beta3 (``/v1beta3/crypto/us``)."""

    path = "/v1beta3/crypto/us"
    CHANNELS = ("trades", "quotes", "orderbooks", "bars", "updatedBars", "dailyBars")

    def __init__(self, key: str, secret: str) -> None:
        super().__init__()
        self.key, self.secret = key, secret

    def on_connect(self, ws: ServerConnection, conn: WsConnection) -> None:
        conn.state.update(authenticated=False, subscriptions={c: [] for c in self.CHANNELS})
        ws.send('[{"T":"success","msg":"connected"}]')

    def on_message(self, ws: ServerConnection, conn: WsConnection, msg: Any) -> None:
        if not isinstance(msg, dict) or "action" not in msg:
            ws.send('[{"T":"error","code":400,"msg":"invalid syntax"}]')
            return
        if msg["action"] == "auth":
            if conn.state["authenticated"]:
                ws.send('[{"T":"error","code":403,"msg":"already authenticated"}]')
            elif msg.get("key") == self.key and msg.get("secret") == self.secret:
                conn.state["authenticated"] = True
                ws.send('[{"T":"success","msg":"authenticated"}]')
            else:
                ws.send('[{"T":"error","code":402,"msg":"auth failed"}]')
                ws.close(1008, "auth failed")
        elif msg["action"] == "subscribe":
            if not conn.state["authenticated"]:
                ws.send('[{"T":"error","code":401,"msg":"not authenticated"}]')
                return
            subs = conn.state["subscriptions"]
            for channel in self.CHANNELS:
                subs[channel] = sorted(set(subs[channel]) | set(msg.get(channel) or []))
            ws.send(json.dumps([{"T": "subscription", **subs}]))

    @staticmethod
    def subscriptions(conn: WsConnection) -> dict[str, list[str]]:
        return dict(conn.state.get("subscriptions", {}))
