"""Exchange trade-history clients (Binance, Bybit): signed REST requests with retries.

Each client speaks its exchange's public, documented REST wire format with ``urllib.request``:

* Binance ``GET /api/v3/myTrades``: HMAC-SHA256 of the query string, ``X-MBX-APIKEY`` header,
  pages by trade id (``fromId = last id + 1``) until a page has fewer than ``limit`` trades.
* Bybit ``GET /v5/execution/list`` (``category=spot``): v5 header signature over
  ``timestamp + api_key + recv_window + queryString``, at most 7 days per request (so a long
  history is walked window by window), newest first inside a window, ``cursor`` pagination.

``fetch`` returns the exchange's raw dicts exactly as received, oldest first. Connection
failures, timeouts, 5xx and rate limits are retried with exponential backoff (honouring
``Retry-After`` / Bybit's reset timestamp), then raise ``TransientError``; rejected credentials
raise ``ConfigError`` with one line that never contains the secret or the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.message import Message as Headers
from typing import Any, Protocol

import orjson

from pipeline.errors import ConfigError, TransientError
from pipeline.journal.fills import normalize_symbol
from pipeline.journal.payloads import BINANCE_API, BYBIT_API

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]

DAY_MS = 86_400_000
BYBIT_WINDOW_MS = 7 * DAY_MS  # the longest span /v5/execution/list accepts per request


class TradeHistoryClient(Protocol):
    """Reads one account's trade history from one exchange. Used from one thread at a time."""

    venue: str
    format: str

    def fetch(self, symbol: str, since_ms: int | None) -> list[dict[str, Any]]:
        """Return the raw trades of ``symbol`` from ``since_ms`` on (inclusive), oldest first."""
        ...


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: Headers
    body: bytes


class _Retry(Exception):
    """A failure worth another attempt; ``wait_s`` is the least the server asked us to wait."""

    def __init__(self, reason: str, wait_s: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait_s = wait_s


def _mask(key: str) -> str:
    return key[:4] + "…" if len(key) > 4 else "…"


class _SignedClient:
    """Signed GETs with retries; subclasses sign the request and judge the response."""

    venue = ""
    format = ""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        base_url: str,
        timeout: float,
        clock: Clock,
        max_attempts: int,
        backoff_s: float,
        max_wait_s: float,
        sleep: Sleep,
    ) -> None:
        if not api_key or not api_secret:
            raise ConfigError(f"{self.venue}: an API key and secret are both required")
        self._api_key = api_key
        self._api_secret = api_secret
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.clock = clock
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self._signature = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key={_mask(self._api_key)!r})"

    def _sign(self, path: str, params: Sequence[tuple[str, object]]) -> tuple[str, dict[str, str]]:
        """Return the full URL and headers of one attempt (signed with the current time)."""
        raise NotImplementedError

    def _judge(self, path: str, response: _Response) -> Any:
        """Return the decoded payload, or raise ``_Retry`` / ``ConfigError``."""
        raise NotImplementedError

    def _hmac(self, text: str) -> str:
        self._signature = hmac.new(self._api_secret.encode(), text.encode(), hashlib.sha256).hexdigest()
        return self._signature

    def _scrub(self, text: str) -> str:
        """Return ``text`` on one short line with the secret, signature and key masked."""
        for secret in (self._api_secret, self._signature, self._api_key):
            if secret:
                text = text.replace(secret, "***")
        return " ".join(text.split())[:300]

    def _send(self, url: str, headers: dict[str, str]) -> _Response:
        request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return _Response(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as exc:  # 4xx/5xx still carry the exchange's JSON
            try:
                body = exc.read()
            except (OSError, http.client.HTTPException):
                body = b""
            return _Response(exc.code, exc.headers, body)

    def _get(self, path: str, params: Sequence[tuple[str, object]]) -> Any:
        last = ""
        for attempt in range(self.max_attempts):
            url, headers = self._sign(path, params)
            wait_s = 0.0
            try:
                return self._judge(path, self._send(url, headers))
            except _Retry as exc:
                last, wait_s = exc.reason, exc.wait_s
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", None) or exc
                last = f"{type(exc).__name__}: {reason}"
            last = self._scrub(last)
            if wait_s > self.max_wait_s:
                raise TransientError(f"{self.venue} {path}: {last}; retry after {wait_s:.0f} s") from None
            if attempt + 1 < self.max_attempts:
                delay = max(wait_s, self.backoff_s * 2**attempt)
                log.warning("%s %s failed (%s); retry %d in %.1f s", self.venue, path, last, attempt + 1, delay)
                self.sleep(delay)
        raise TransientError(f"{self.venue} {path}: {last} (gave up after {self.max_attempts} attempts)")

    def _json(self, path: str, response: _Response) -> Any:
        try:
            return orjson.loads(response.body)
        except orjson.JSONDecodeError:
            raise _Retry(f"HTTP {response.status}: response is not JSON") from None

    @staticmethod
    def _retry_after(headers: Headers) -> float:
        try:
            return max(0.0, float(headers.get("Retry-After", "0")))
        except ValueError:
            return 0.0


class BinanceClient(_SignedClient):
    """Binance spot ``GET /api/v3/myTrades`` for one API key (read-only permission is enough)."""

    venue = "binance"
    format = BINANCE_API
    path = "/api/v3/myTrades"
    limit = 1000
    recv_window = 5000
    AUTH_CODES = frozenset({-1021, -1022, -2014, -2015})

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        base_url: str = "https://api.binance.com",
        timeout: float = 10,
        clock: Clock = time.time,
        *,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        max_wait_s: float = 60.0,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(api_key, api_secret, base_url, timeout, clock, max_attempts, backoff_s, max_wait_s, sleep)

    def fetch(self, symbol: str, since_ms: int | None) -> list[dict[str, Any]]:
        """Return every trade of ``symbol`` from ``since_ms`` on (all of them when None), oldest first.

        Only the parameter combinations Binance documents are sent (``symbol``; ``symbol + fromId``;
        ``symbol + startTime + endTime``, at most 24 hours apart; never ``fromId`` with a time), and
        nothing rests on what ``symbol + startTime`` alone returns, which the documentation leaves
        open (the oldest trades from then on, or only that day's):

        * no ``since_ms``: pages by ``fromId`` from 0 (``id >= fromId``, as documented);
        * else one ``symbol`` request (the most recent trades): when it holds fewer than ``limit``
          trades, or reaches back before ``since_ms``, it holds every trade since then;
        * else 24-hour windows from ``since_ms`` on until one holds a trade, then pages by
          ``fromId`` from that trade, which reaches every later trade whatever its time.
        """
        symbol = normalize_symbol(symbol)
        if since_ms is None:
            return self._from_id(symbol, 0)
        recent = self._page([("symbol", symbol), ("limit", self.limit)])
        if len(recent) < self.limit or (recent and _time_of(recent[0]) < since_ms):
            return [t for t in recent if _time_of(t) >= since_ms]
        now_ms = int(self.clock() * 1000)
        start = since_ms
        while start <= now_ms:
            end = start + DAY_MS - 1
            window = self._page([("symbol", symbol), ("startTime", start), ("endTime", end), ("limit", self.limit)])
            if window:
                return self._from_id(symbol, _id_of(window[0]))
            start = end + 1
        return []

    def _page(self, params: list[tuple[str, object]]) -> list[dict[str, Any]]:
        page = self._get(self.path, params)
        if not isinstance(page, list):
            raise TransientError(f"binance {self.path}: expected a list, got {type(page).__name__}")
        return page

    def _from_id(self, symbol: str, from_id: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self._page([("symbol", symbol), ("fromId", from_id), ("limit", self.limit)])
            out.extend(page)
            if len(page) < self.limit:
                return out
            from_id = _id_of(page[-1]) + 1

    def _sign(self, path: str, params: Sequence[tuple[str, object]]) -> tuple[str, dict[str, str]]:
        query = urllib.parse.urlencode(
            [*params, ("recvWindow", self.recv_window), ("timestamp", int(self.clock() * 1000))]
        )
        url = f"{self.base_url}{path}?{query}&signature={self._hmac(query)}"
        return url, {"X-MBX-APIKEY": self._api_key}

    def _judge(self, path: str, response: _Response) -> Any:
        status = response.status
        if status in (418, 429):
            raise _Retry(f"rate limited (HTTP {status})", self._retry_after(response.headers))
        if status >= 500 or status == 403:  # 403: the WAF limit; 5xx: Binance-side trouble
            raise _Retry(f"HTTP {status}")
        payload = self._json(path, response)
        if status == 200:
            return payload
        code = payload.get("code") if isinstance(payload, dict) else None
        msg = self._scrub(str(payload.get("msg", "")) if isinstance(payload, dict) else "")
        if code == -1021:
            raise ConfigError(f"binance rejected the request time ({msg}); check this machine's clock")
        if status == 401 or code in self.AUTH_CODES:
            raise ConfigError(f"binance rejected the API credentials: {msg} (code {code})")
        raise ConfigError(f"binance {path} refused the request: {msg} (HTTP {status}, code {code})")


class BybitClient(_SignedClient):
    """Bybit v5 ``GET /v5/execution/list`` (spot executions) for one API key."""

    venue = "bybit"
    format = BYBIT_API
    path = "/v5/execution/list"
    limit = 100
    AUTH_CODES = frozenset({10003, 10004, 10005, 10007, 10008, 10009, 10010, 33004, -2015})
    RETRY_CODES = frozenset({10000, 10016})  # server timeout / server error

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        base_url: str = "https://api.bybit.com",
        timeout: float = 10,
        clock: Clock = time.time,
        recv_window: int = 5000,
        *,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        max_wait_s: float = 60.0,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(api_key, api_secret, base_url, timeout, clock, max_attempts, backoff_s, max_wait_s, sleep)
        self.recv_window = recv_window

    def fetch(self, symbol: str, since_ms: int | None) -> list[dict[str, Any]]:
        """Return every spot execution of ``symbol`` from ``since_ms`` on, oldest first.

        With ``since_ms`` None this is Bybit's default span (the last 7 days). Otherwise the
        history is read in 7-day windows up to now, each followed through its cursor pages.
        """
        symbol = normalize_symbol(symbol)
        if since_ms is None:
            windows: Iterable[tuple[int | None, int | None]] = [(None, None)]
        else:
            windows = self._windows(since_ms, int(self.clock() * 1000))
        out: list[dict[str, Any]] = []
        seen: set[object] = set()
        for start, end in windows:
            for item in reversed(self._window(symbol, start, end)):  # Bybit lists newest first
                key = item.get("execId") if isinstance(item, dict) else None
                if key is None or key not in seen:
                    seen.add(key)
                    out.append(item)
        out.sort(key=_exec_time)  # stable: ties keep the exchange's order
        return out

    @staticmethod
    def _windows(since_ms: int, now_ms: int) -> list[tuple[int | None, int | None]]:
        windows: list[tuple[int | None, int | None]] = []
        start = since_ms
        while True:
            end = min(start + BYBIT_WINDOW_MS - 1, max(now_ms, start))
            windows.append((start, end))
            if end >= now_ms:
                return windows
            start = end + 1

    def _window(self, symbol: str, start: int | None, end: int | None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            params: list[tuple[str, object]] = [("category", "spot"), ("symbol", symbol)]
            if start is not None:
                params.append(("startTime", start))
            if end is not None:
                params.append(("endTime", end))
            params.append(("limit", self.limit))
            if cursor:
                params.append(("cursor", cursor))
            result = self._get(self.path, params)
            page = result.get("list") if isinstance(result, dict) else None
            if not isinstance(page, list):
                raise TransientError(f"bybit {self.path}: result.list missing")
            items.extend(page)
            nxt = result.get("nextPageCursor") or ""
            if not page or not nxt or nxt == cursor:
                return items
            cursor = str(nxt)

    def _sign(self, path: str, params: Sequence[tuple[str, object]]) -> tuple[str, dict[str, str]]:
        # Values go in as they are: Bybit's cursor is already URL-encoded, and the signature must
        # cover exactly the query string that is sent.
        query = "&".join(f"{k}={v}" for k, v in params)
        timestamp = str(int(self.clock() * 1000))
        sign = self._hmac(timestamp + self._api_key + str(self.recv_window) + query)
        headers = {
            "X-BAPI-API-KEY": self._api_key,
            "X-BAPI-TIMESTAMP": timestamp,
            "X-BAPI-RECV-WINDOW": str(self.recv_window),
            "X-BAPI-SIGN": sign,
        }
        return f"{self.base_url}{path}?{query}", headers

    def _judge(self, path: str, response: _Response) -> Any:
        status = response.status
        if status == 429:
            raise _Retry("rate limited (HTTP 429)", self._retry_after(response.headers))
        if status == 403:  # "access too frequent": the IP limit; Bybit asks for 10 minutes
            raise _Retry("IP rate limit (HTTP 403)", max(self._retry_after(response.headers), 600.0))
        if status >= 500:
            raise _Retry(f"HTTP {status}")
        payload = self._json(path, response)
        if not isinstance(payload, dict):
            raise _Retry(f"HTTP {status}: unexpected body")
        code, msg = payload.get("retCode"), self._scrub(str(payload.get("retMsg", "")))
        if code == 0 and status == 200:
            return payload.get("result")
        if code == 10006:
            raise _Retry(f"rate limited (retCode 10006: {msg})", self._reset_wait(response.headers))
        if code in self.RETRY_CODES:
            raise _Retry(f"retCode {code}: {msg}")
        if code == 10002:
            raise ConfigError("bybit rejected the request time (retCode 10002); check this machine's clock")
        if status == 401 or code in self.AUTH_CODES:
            raise ConfigError(f"bybit rejected the API credentials: {msg} (retCode {code})")
        raise ConfigError(f"bybit {path} refused the request: {msg} (HTTP {status}, retCode {code})")

    def _reset_wait(self, headers: Headers) -> float:
        try:
            reset_ms = int(headers.get("X-Bapi-Limit-Reset-Timestamp", "0"))
        except ValueError:
            return 1.0
        return max(0.0, reset_ms / 1000 - self.clock())


def _time_of(trade: Any) -> int:
    try:
        return int(trade["time"])
    except (KeyError, TypeError, ValueError):
        raise TransientError("binance /api/v3/myTrades: a trade without an integer time") from None


def _id_of(trade: Any) -> int:
    try:
        return int(trade["id"])
    except (KeyError, TypeError, ValueError):
        raise TransientError("binance /api/v3/myTrades: a trade without an integer id") from None


def _exec_time(item: Any) -> int:
    try:
        return int(item["execTime"])
    except (KeyError, TypeError, ValueError):
        return 0


def client_for(venue: str, api_key: str, api_secret: str, base_url: str | None = None) -> TradeHistoryClient:
    """Return the trade-history client of ``venue`` ("binance" or "bybit")."""
    make = {"binance": BinanceClient, "bybit": BybitClient}[venue]
    return make(api_key, api_secret, base_url) if base_url else make(api_key, api_secret)
