"""Local stand-ins for the Binance and Bybit REST APIs, for the one boundary tests cannot reach.

Each fake is a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) that speaks the exchange's
documented wire format: it checks the signature and the request time exactly as the exchange
does and answers a bad one with the exchange's own error JSON and status, serves canned trades
with the real field names (numbers as strings where the exchange sends strings), pages like the
exchange, and can be told to fail the next N requests (500, or 429 with ``Retry-After``).

Use as a context manager::

    with FakeBinance("key", "secret", trades=[binance_trade(1, ...)]) as fake:
        BinanceClient("key", "secret", base_url=fake.base_url).fetch("BTCUSDT", None)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.http import LocalHttpFake

DAY_MS = 86_400_000


@dataclass(frozen=True)
class SeenRequest:
    """One request as the fake received it."""

    path: str
    query: str
    params: dict[str, str]
    headers: Message  # case-insensitive, as HTTP headers are
    method: str = "GET"


@dataclass
class _Failure:
    status: int
    retry_after: float | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class _FakeExchange(LocalHttpFake):
    """What both fake exchanges share on top of the HTTP plumbing: keys, seen requests, scripted failures."""

    def __init__(self, api_key: str, api_secret: str, clock: Any = time.time) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.clock = clock
        self.requests: list[SeenRequest] = []
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()
        super().__init__()

    def fail_next(self, n: int, status: int = 500, retry_after: float | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (and ``Retry-After`` when given)."""
        body = self.failure_body(status)
        with self._lock:
            self._failures.extend(_Failure(status, retry_after, body) for _ in range(n))

    def failure_body(self, status: int) -> bytes:
        return b"<html><body><h1>500 Internal Server Error</h1></body></html>" if status >= 500 else b""

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(h.path)
        params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        seen = SeenRequest(parts.path, parts.query, params, h.headers, h.command)
        with self._lock:
            self.requests.append(seen)
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            headers = dict(failure.headers)
            if failure.retry_after is not None:
                headers["Retry-After"] = f"{failure.retry_after:g}"
            self._reply(h, failure.status, failure.body, headers)
            return
        status, payload, headers = self.handle(seen)
        self._reply(h, status, json.dumps(payload, separators=(",", ":")).encode(), headers)

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json;charset=UTF-8")
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def handle(self, req: SeenRequest) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def _hmac(self, text: str) -> str:
        return hmac.new(self.api_secret.encode(), text.encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- Binance


def binance_trade(
    trade_id: int,
    time_ms: int,
    *,
    symbol: str = "BTCUSDT",
    price: str = "92150.01",
    qty: str = "0.00150000",
    is_buyer: bool = True,
    commission: str = "0.00000150",
    commission_asset: str = "BTC",
    order_id: int | None = None,
    is_maker: bool = False,
) -> dict[str, Any]:
    """Return one ``GET /api/v3/myTrades`` object with Binance's field names and encodings."""
    quote = f"{float(price) * float(qty):.8f}".rstrip("0").rstrip(".")
    return {
        "symbol": symbol,
        "id": trade_id,
        "orderId": order_id if order_id is not None else 100_000 + trade_id,
        "orderListId": -1,
        "price": price,
        "qty": qty,
        "quoteQty": quote,
        "commission": commission,
        "commissionAsset": commission_asset,
        "time": time_ms,
        "isBuyer": is_buyer,
        "isMaker": is_maker,
        "isBestMatch": True,
    }


# The example of the Binance spot REST API documentation, as recorded there.
BINANCE_DOC_TRADE: dict[str, Any] = {
    "symbol": "BNBBTC",
    "id": 28457,
    "orderId": 100234,
    "orderListId": -1,
    "price": "4.00000100",
    "qty": "12.00000000",
    "quoteQty": "48.000012",
    "commission": "10.10000000",
    "commissionAsset": "BNB",
    "time": 1499865549590,
    "isBuyer": True,
    "isMaker": False,
    "isBestMatch": True,
}


class FakeBinance(_FakeExchange):
    """``GET /api/v3/myTrades`` as Binance serves it (HMAC-SHA256 signed, ``X-MBX-APIKEY``)."""

    PATH = "/api/v3/myTrades"

    def __init__(
        self, api_key: str, api_secret: str, trades: Iterable[dict[str, Any]] = (), clock: Any = time.time
    ) -> None:
        super().__init__(api_key, api_secret, clock)
        self.trades: list[dict[str, Any]] = list(trades)
        # What ``symbol + startTime`` alone returns is not documented: the oldest trades from then
        # on (False), or only the 24 hours after it (True). A client must be right under both.
        self.start_only_day = False
        self.listen_keys: list[str] = []
        self.keepalives = 0

    def add(self, *trades: dict[str, Any]) -> None:
        with self._lock:
            self.trades.extend(trades)

    def failure_body(self, status: int) -> bytes:
        if status == 429:
            return (
                b'{"code":-1003,"msg":"Too many requests; current limit of IP(127.0.0.1) is 6000 requests '
                b'per minute. Please use WebSocket Streams for live updates to avoid polling the API."}'
            )
        if status == 418:
            return b'{"code":-1003,"msg":"Way too many requests; IP(127.0.0.1) banned until 1731767702000."}'
        return super().failure_body(status)

    @staticmethod
    def _error(status: int, code: int, msg: str) -> tuple[int, Any, dict[str, str]]:
        return status, {"code": code, "msg": msg}, {}

    def _user_data_stream(self, req: SeenRequest) -> tuple[int, Any, dict[str, str]]:
        """``/api/v3/userDataStream``: POST issues a listen key, PUT keeps it alive, DELETE closes it
        (the API key alone, no signature, as documented)."""
        if req.headers.get("X-MBX-APIKEY") != self.api_key:
            return self._error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        with self._lock:
            if req.method == "POST":
                key = f"lk{len(self.listen_keys):04d}" + "x" * 54
                self.listen_keys.append(key)
                return 200, {"listenKey": key}, {}
            known = req.params.get("listenKey") in self.listen_keys
        if not known:
            return self._error(400, -1125, "This listenKey does not exist.")
        if req.method == "PUT":
            self.keepalives += 1
        return 200, {}, {}

    def handle(self, req: SeenRequest) -> tuple[int, Any, dict[str, str]]:
        if req.path == "/api/v3/userDataStream":
            return self._user_data_stream(req)
        if req.path != self.PATH:
            return self._error(404, -1000, "An unknown error occurred while processing the request.")
        if req.headers.get("X-MBX-APIKEY") != self.api_key:
            return self._error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        p = req.params
        pairs = req.query.split("&")
        signed = "&".join(x for x in pairs if not x.startswith("signature="))
        if not hmac.compare_digest(self._hmac(signed), p.get("signature", "").lower()):
            return self._error(400, -1022, "Signature for this request is not valid.")
        try:
            timestamp = int(p["timestamp"])
            recv_window = int(p.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            return self._error(
                400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            )
        if recv_window > 60_000:
            return self._error(400, -1131, "recvWindow must be less than 60000")
        now = self.now_ms()
        if not now - recv_window <= timestamp < now + 1000:
            return self._error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        if not p.get("symbol"):
            return self._error(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        limit = int(p.get("limit", "500"))
        if not 1 <= limit <= 1000:
            return self._error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        has = {k for k in ("startTime", "endTime", "fromId", "orderId") if k in p}
        if "fromId" in has and has & {"startTime", "endTime"}:
            return self._error(400, -1128, "Combination of optional parameters invalid.")
        start, end = int(p.get("startTime", 0)), int(p.get("endTime", 2**62))
        if has == {"startTime"} and self.start_only_day:
            end = start + DAY_MS
        if {"startTime", "endTime"} <= has and end - start > DAY_MS:
            return self._error(400, -1127, "More than 24 hours between startTime and endTime.")
        with self._lock:
            mine = sorted((t for t in self.trades if t["symbol"] == p["symbol"]), key=lambda t: t["id"])
        if "fromId" in has:
            page = [t for t in mine if t["id"] >= int(p["fromId"])][:limit]
        elif "startTime" in has:  # the oldest trades from startTime on
            page = [t for t in mine if start <= t["time"] <= end][:limit]
        else:  # most recent trades (before endTime if given)
            page = [t for t in mine if t["time"] <= end][-limit:]
        return 200, page, {"x-mbx-used-weight-1m": str(20 * len(self.requests))}


# --------------------------------------------------------------------------- Bybit


def bybit_execution(
    exec_id: str,
    time_ms: int,
    *,
    symbol: str = "BTCUSDT",
    side: str = "Buy",
    price: str = "92150.5",
    qty: str = "0.002",
    fee: str = "0.000002",
    fee_currency: str | None = "BTC",
    fee_field: str = "feeCurrency",
    exec_type: str = "Trade",
    order_id: str | None = None,
    is_maker: bool = False,
) -> dict[str, Any]:
    """Return one ``/v5/execution/list`` spot execution with Bybit's field names and encodings."""
    value = f"{float(price) * float(qty):.8f}".rstrip("0").rstrip(".")
    item: dict[str, Any] = {
        "symbol": symbol,
        "orderType": "Limit",
        "underlyingPrice": "",
        "orderLinkId": "",
        "orderId": order_id or f"18537182457652{exec_id[-5:]:0>5}",
        "stopOrderType": "",
        "execTime": str(time_ms),
        "createType": "CreateByUser",
        "feeRate": "0.001",
        "tradeIv": "",
        "blockTradeId": "",
        "markPrice": "",
        "execPrice": price,
        "markIv": "",
        "orderQty": qty,
        "orderPrice": price,
        "execValue": value,
        "closedSize": "",
        "execType": exec_type,
        "seq": 47264718237,
        "side": side,
        "indexPrice": "",
        "leavesQty": "0",
        "isMaker": is_maker,
        "execFee": fee,
        "execId": exec_id,
        "marketUnit": "",
        "execQty": qty,
        "extraFees": "",
    }
    if fee_currency is not None:
        item[fee_field] = fee_currency
    return item


# An execution as the Bybit v5 documentation and a spot account return it.
BYBIT_DOC_EXECUTION: dict[str, Any] = bybit_execution(
    "2100000000072181418", 1731767702000, price="92150.5", qty="0.002", fee="0.00012", fee_currency="BTC"
)


class FakeBybit(_FakeExchange):
    """``GET /v5/execution/list`` as Bybit serves it (v5 HMAC header signature)."""

    PATH = "/v5/execution/list"

    def __init__(
        self, api_key: str, api_secret: str, executions: Iterable[dict[str, Any]] = (), clock: Any = time.time
    ) -> None:
        super().__init__(api_key, api_secret, clock)
        self.executions: list[dict[str, Any]] = list(executions)
        self._rate_limited = 0
        self._reset_in_ms = 0

    def add(self, *executions: dict[str, Any]) -> None:
        with self._lock:
            self.executions.extend(executions)

    def rate_limit_next(self, n: int, reset_in_ms: int = 200) -> None:
        """Answer the next ``n`` requests with retCode 10006 and a reset timestamp ``reset_in_ms`` ahead."""
        with self._lock:
            self._rate_limited += n
            self._reset_in_ms = reset_in_ms

    def _envelope(self, code: int, msg: str, result: Any = None) -> dict[str, Any]:
        return {
            "retCode": code,
            "retMsg": msg,
            "result": result if result is not None else {},
            "retExtInfo": {},
            "time": self.now_ms(),
        }

    def _instruments(self, p: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """``GET /v5/market/instruments-info`` (public): the spot pairs the canned executions trade."""
        if p.get("category") != "spot":
            return 200, self._envelope(0, "OK", {"category": p.get("category"), "list": []}), {}
        with self._lock:
            symbols = sorted({e["symbol"] for e in self.executions})
        pairs = [
            {
                "symbol": s,
                "baseCoin": s[:-4],
                "quoteCoin": s[-4:],
                "status": "Trading",
                "lotSizeFilter": {
                    "basePrecision": "0.000001",
                    "quotePrecision": "0.00000001",
                    "minOrderQty": "0.000048",
                },
                "priceFilter": {"tickSize": "0.01"},
            }
            for s in symbols
            if s.endswith("USDT")
        ]
        return 200, self._envelope(0, "OK", {"category": "spot", "list": pairs}), {}

    def handle(self, req: SeenRequest) -> tuple[int, Any, dict[str, str]]:
        now = self.now_ms()
        limits = {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "9", "X-Bapi-Limit-Reset-Timestamp": str(now)}
        if req.path == "/v5/market/instruments-info":
            return self._instruments(req.params)
        if req.path not in (self.PATH, "/v5/asset/coin/query-info"):
            return 404, self._envelope(10017, "Route not found."), {}
        h = req.headers
        key, ts, recv, sign = (
            h.get("X-BAPI-API-KEY", ""),
            h.get("X-BAPI-TIMESTAMP", ""),
            h.get("X-BAPI-RECV-WINDOW", "5000"),
            h.get("X-BAPI-SIGN", ""),
        )
        if key != self.api_key:
            return 200, self._envelope(10003, "API key is invalid."), {}
        origin = ts + key + recv + req.query
        if not hmac.compare_digest(self._hmac(origin), sign):
            return 200, self._envelope(10004, f"error sign! origin_string[{origin}]"), {}
        if not (ts.isdigit() and recv.isdigit() and now - int(recv) <= int(ts) < now + 1000):
            return (
                200,
                self._envelope(
                    10002,
                    "invalid request, please check your server timestamp or "
                    f"recv_window param. req_timestamp[{ts}],server_timestamp[{now}],"
                    f"recv_window[{recv}]",
                ),
                {},
            )
        with self._lock:
            if self._rate_limited:
                self._rate_limited -= 1
                limits.update(
                    {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(now + self._reset_in_ms)}
                )
                return 200, self._envelope(10006, "Too many visits. Exceeded the API Rate Limit."), limits
            executions = list(self.executions)
        if req.path == "/v5/asset/coin/query-info":  # the coins' networks: none are needed here
            return 200, self._envelope(0, "OK", {"rows": []}), limits
        return self._list(req.params, executions, now, limits)

    def _list(
        self, p: dict[str, str], executions: list[dict[str, Any]], now: int, limits: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        if p.get("category") not in ("spot", "linear", "inverse", "option"):
            return 200, self._envelope(10001, "category only support spot,linear,inverse,option"), limits
        limit = int(p.get("limit", "50"))
        if not 1 <= limit <= 100:
            return 200, self._envelope(10001, "limit must be between 1 and 100"), limits
        start, end = p.get("startTime"), p.get("endTime")
        if start is None and end is None:
            lo, hi = now - 7 * DAY_MS, now
        elif end is None:
            lo = int(start)  # type: ignore[arg-type]  # not None: both None is the first case
            hi = lo + 7 * DAY_MS
        elif start is None:
            hi = int(end)
            lo = hi - 7 * DAY_MS
        else:
            lo, hi = int(start), int(end)
            if hi - lo > 7 * DAY_MS:
                return (
                    200,
                    self._envelope(10001, "The time range between startTime and endTime cannot exceed 7 days"),
                    limits,
                )
        rows = [
            e
            for e in executions
            if (not p.get("symbol") or e["symbol"] == p["symbol"]) and lo <= int(e["execTime"]) <= hi
        ]
        rows.sort(key=lambda e: (int(e["execTime"]), e["execId"]), reverse=True)  # newest first
        offset = 0
        if p.get("cursor"):
            try:
                offset = int(p["cursor"].split(":")[0])
            except ValueError:
                return 200, self._envelope(10001, "cursor invalid"), limits
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        # Bybit's cursors come URL-encoded ("page%3A1%2C...") and go back exactly as given.
        cursor = urllib.parse.quote(f"{offset + limit}:{len(rows)},{offset + limit}:{lo}", safe="") if more else ""
        result = {"nextPageCursor": cursor, "category": p["category"], "list": page}
        return 200, self._envelope(0, "OK", result), limits


# --------------------------------------------------------------------------- Kraken


def kraken_trade(
    txid: str, time_s: float, *, side: str = "buy", price: str = "30010.0", vol: str = "0.02"
) -> dict[str, Any]:
    """One ``TradesHistory`` trade with Kraken's field names (numbers as strings, time in seconds)."""
    cost = f"{float(price) * float(vol):.5f}"
    return {
        "txid": txid,
        "ordertxid": "O" + txid[1:],
        "postxid": "TKH2SE-M7IF5-CFI7LT",
        "pair": "XXBTZUSD",
        "time": time_s,
        "type": side,
        "ordertype": "limit",
        "price": price,
        "cost": cost,
        "fee": f"{float(cost) * 0.0026:.5f}",
        "vol": vol,
        "margin": "0.00000",
        "misc": "",
        "trade_id": abs(hash(txid)) % 10_000_000,
    }


class FakeKraken(_FakeExchange):
    """Kraken's REST API as ccxt reads it: public ``Assets`` and ``AssetPairs``, and private
    ``POST /0/private/TradesHistory`` signed as Kraken documents (``API-Sign`` = base64 of
    HMAC-SHA512 over the path and SHA-256 of nonce + body, keyed by the base64-decoded secret),
    with a nonce that must grow; 50 trades a page, newest first, ``start`` exclusive and ``end``
    inclusive in Unix seconds, ``ofs`` an offset."""

    PAGE = 50

    def __init__(self, api_key: str, api_secret: str, trades: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__(api_key, api_secret)
        self.trades = list(trades)
        self._nonce = 0

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length).decode() if length else ""
        parts = urllib.parse.urlsplit(h.path)
        params = dict(urllib.parse.parse_qsl(body or parts.query, keep_blank_values=True))
        seen = SeenRequest(parts.path, body or parts.query, params, h.headers, h.command)
        with self._lock:
            self.requests.append(seen)
        status, payload, headers = self.handle(seen)
        self._reply(h, status, json.dumps(payload).encode(), headers)

    def handle(self, req: SeenRequest) -> tuple[int, Any, dict[str, str]]:
        if req.path == "/0/public/Assets":
            assets = {"XXBT": "XBT", "ZUSD": "USD"}
            return 200, {"error": [], "result": {k: _kraken_asset(v) for k, v in assets.items()}}, {}
        if req.path == "/0/public/AssetPairs":
            return 200, {"error": [], "result": {"XXBTZUSD": _KRAKEN_PAIR}}, {}
        if req.path != "/0/private/TradesHistory":
            return 404, {"error": ["EGeneral:Unknown method"]}, {}
        if req.headers.get("API-Key") != self.api_key:
            return 200, {"error": ["EAPI:Invalid key"]}, {}
        nonce = req.params.get("nonce", "")
        digest = hashlib.sha256((nonce + req.query).encode()).digest()
        want = base64.b64encode(
            hmac.new(base64.b64decode(self.api_secret), req.path.encode() + digest, hashlib.sha512).digest()
        ).decode()
        if req.headers.get("API-Sign") != want:
            return 200, {"error": ["EAPI:Invalid signature"]}, {}
        with self._lock:
            if not nonce.isdigit() or int(nonce) <= self._nonce:
                return 200, {"error": ["EAPI:Invalid nonce"]}, {}
            self._nonce = int(nonce)
        start = float(req.params.get("start", "0"))
        end = float(req.params.get("end", "1e12"))
        ofs = int(req.params.get("ofs", "0"))
        rows = sorted((t for t in self.trades if start < t["time"] <= end), key=lambda t: -t["time"])
        page = rows[ofs : ofs + self.PAGE]
        result = {"trades": {t["txid"]: {k: v for k, v in t.items() if k != "txid"} for t in page}, "count": len(rows)}
        return 200, {"error": [], "result": result}, {}


def _kraken_asset(altname: str) -> dict[str, Any]:
    return {"aclass": "currency", "altname": altname, "decimals": 10, "display_decimals": 5, "status": "enabled"}


_KRAKEN_PAIR: dict[str, Any] = {
    "altname": "XBTUSD",
    "wsname": "XBT/USD",
    "aclass_base": "currency",
    "base": "XXBT",
    "aclass_quote": "currency",
    "quote": "ZUSD",
    "lot": "unit",
    "cost_decimals": 5,
    "pair_decimals": 1,
    "lot_decimals": 8,
    "lot_multiplier": 1,
    "leverage_buy": [2, 3, 4, 5],
    "leverage_sell": [2, 3, 4, 5],
    "fees": [[0, 0.26]],
    "fees_maker": [[0, 0.16]],
    "fee_volume_currency": "ZUSD",
    "margin_call": 80,
    "margin_stop": 40,
    "ordermin": "0.0001",
    "costmin": "0.5",
    "tick_size": "0.1",
    "status": "online",
}
