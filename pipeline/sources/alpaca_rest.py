"""Alpaca's historical stock bars over REST (market data v2 ``GET /v2/stocks/bars``), through the
official SDK (alpaca-py's ``StockHistoricalDataClient``), which follows ``next_page_token`` until
the last page.

``AlpacaBars.minute_bars`` returns the raw bars (Alpaca's ``t o h l c v n vw``) per symbol. The
SDK sets no HTTP timeout; this client adds one (``timeout_s``) so a hung request cannot stall a
feed. Rejected credentials (401/403) are a ``ConfigError`` naming the key by its first characters;
everything else (429 after the SDK's own retries, 5xx, a dropped connection) is a
``TransientError``. Neither ever holds the secret: the SDK sends it as a header, and error lines are
built from the status code and Alpaca's ``message``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

import orjson

from pipeline.errors import ConfigError, TransientError

log = logging.getLogger(__name__)

Feed = Literal["iex", "sip"]
DATA_URL = "https://data.alpaca.markets"


def _mask(key: str) -> str:
    return key[:4] + "…" if len(key) > 4 else "…"


class AlpacaBars:
    """Historical minute bars of stocks (thread-safe enough for one source thread)."""

    def __init__(
        self, key: str, secret: str, *, feed: Feed = "iex", url: str | None = None, timeout_s: float = 10.0
    ) -> None:
        from alpaca.data.historical.stock import StockHistoricalDataClient

        timeout = timeout_s

        class _Client(StockHistoricalDataClient):
            def _one_request(self, method: str, url: str, opts: dict, retry: int) -> dict:
                return super()._one_request(method, url, {**opts, "timeout": timeout}, retry)

        self.key = key
        self.feed = feed
        self.url = (url or DATA_URL).rstrip("/")
        self.client = _Client(api_key=key, secret_key=secret, raw_data=True, url_override=self.url)
        self.client._retry_wait = 1  # seconds between the SDK's retries of a 429

    def __repr__(self) -> str:
        return f"AlpacaBars(url={self.url!r}, key={_mask(self.key)!r}, feed={self.feed!r})"

    def minute_bars(
        self, symbols: list[str], start: datetime, end: datetime | None = None, *, timeframe: str = "1Min"
    ) -> dict[str, list[dict[str, Any]]]:
        """Return the ``timeframe`` (``1Min`` or ``1Day``) bars of ``symbols`` from ``start`` (to
        ``end``), oldest first per symbol, every page followed."""
        import requests
        from alpaca.common.exceptions import APIError
        from alpaca.data.enums import DataFeed
        from alpaca.data.requests import StockBarsRequest
        from alpaca.data.timeframe import TimeFrame

        request = StockBarsRequest(
            symbol_or_symbols=symbols,
            timeframe=TimeFrame.Day if timeframe == "1Day" else TimeFrame.Minute,
            start=start,
            end=end,
            feed=DataFeed.SIP if self.feed == "sip" else DataFeed.IEX,
        )
        try:
            raw = self.client.get_stock_bars(request)
        except APIError as exc:
            status = exc.status_code
            try:
                message = str(orjson.loads(str(exc)).get("message", ""))
            except (orjson.JSONDecodeError, AttributeError):
                message = " ".join(str(exc).split())[:200]
            if status in (401, 403):
                raise ConfigError(
                    f"alpaca data API rejected the credentials for key {_mask(self.key)}: {message} (HTTP {status})"
                ) from None
            raise TransientError(f"alpaca data API: HTTP {status}: {message}") from None
        except requests.RequestException as exc:
            raise TransientError(f"alpaca data API unreachable: {type(exc).__name__}") from None
        if not isinstance(raw, dict):
            raise TransientError("alpaca data API: the answer is not an object of bars by symbol")
        return {s: list(v) for s, v in raw.items() if isinstance(v, list)}
