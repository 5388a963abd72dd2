"""Past 1-minute bars from Binance's public klines endpoint (``GET /api/v3/klines``, no key), for the
journal's trades on symbols or times the desk has no bars of.

``fetch_klines`` pages through ``[start, end]`` 1,000 bars a request and returns plain tuples; it never
writes anything. HTTP 429/418/5xx and network failures raise ``TransientError`` (try later); any other
refusal (an unknown symbol is HTTP 400, code -1121) raises ``KlinesRefused`` with Binance's message.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request

import orjson

from pipeline.errors import PipelineError, TransientError

MINUTE_MS = 60_000
PAGE = 1000
MAX_PAGES = 50  # 50,000 bars (about 35 days) per call at most: a trade longer than that keeps its gap
Kline = tuple[int, float, float, float, float, float]


class KlinesRefused(PipelineError):
    """Binance refused the request (an unknown symbol, bad parameters): asking again will not help."""


def fetch_klines(base_url: str, symbol: str, start_ms: int, end_ms: int, *, timeout_s: float = 10.0) -> list[Kline]:
    """Return the 1-minute bars of ``symbol`` starting in [``start_ms``, ``end_ms``] as
    (start, open, high, low, close, volume), oldest first."""
    out: list[Kline] = []
    since = start_ms - start_ms % MINUTE_MS
    for _ in range(MAX_PAGES):
        if since > end_ms:
            break
        query = urllib.parse.urlencode(
            {"symbol": symbol, "interval": "1m", "startTime": since, "endTime": end_ms, "limit": PAGE}
        )
        rows = _get(f"{base_url.rstrip('/')}/api/v3/klines?{query}", timeout_s)
        page = [_kline(row) for row in rows]
        out.extend(k for k in page if start_ms - start_ms % MINUTE_MS <= k[0] <= end_ms)
        if len(page) < PAGE:
            break
        since = page[-1][0] + MINUTE_MS
    return out


def _kline(row: object) -> Kline:
    if not isinstance(row, list) or len(row) < 6:
        raise KlinesRefused(f"a kline is a list of at least 6 fields, got {str(row)[:80]}")
    try:
        return (int(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5]))
    except (TypeError, ValueError):
        raise KlinesRefused(f"a kline holds numbers, got {str(row)[:80]}") from None


def _get(url: str, timeout_s: float) -> list[object]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        try:
            text = exc.read().decode("utf-8", "replace")[:200]
        except (OSError, http.client.HTTPException):
            text = ""
        if exc.code in (418, 429) or exc.code >= 500:
            raise TransientError(f"klines: HTTP {exc.code} {text}") from None
        raise KlinesRefused(f"klines refused: HTTP {exc.code} {text}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise TransientError(f"klines: {type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise TransientError("klines: the answer is not JSON") from None
    if not isinstance(payload, list):
        raise KlinesRefused(f"klines: expected a list, got {str(payload)[:80]}")
    return payload
