"""Binance's public klines endpoint (``GET /api/v3/klines``) over stdlib HTTP, in its wire format: each
kline a list ``[open time, "open", "high", "low", "close", "volume", close time, "quote volume",
trades, "taker base", "taker quote", "0"]``, an unknown symbol answered 400 with code -1121."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler

from tests.fakes.http import LocalHttpFake

MINUTE_MS = 60_000


class FakeBinanceKlines(LocalHttpFake):
    """Serves ``bars[symbol]`` = [(start, open, high, low, close, volume), ...]; records each request."""

    def __init__(self, bars: dict[str, list[tuple[int, float, float, float, float, float]]]) -> None:
        self.bars = bars
        self.requests: list[dict[str, str]] = []
        self._lock = threading.Lock()
        super().__init__()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(h.path)
        p = dict(urllib.parse.parse_qsl(parts.query))
        with self._lock:
            self.requests.append(p)
        payload: object
        if parts.path != "/api/v3/klines":
            status, payload = 404, {"code": -1, "msg": "Not found"}
        elif p.get("symbol") not in self.bars:
            status, payload = 400, {"code": -1121, "msg": "Invalid symbol."}
        elif p.get("interval") != "1m":
            status, payload = 400, {"code": -1120, "msg": "Invalid interval."}
        else:
            start, end = int(p.get("startTime", 0)), int(p.get("endTime", 2**62))
            limit = min(int(p.get("limit", 500)), 1000)
            rows = [b for b in self.bars[p["symbol"]] if start <= b[0] <= end][:limit]
            status = 200
            payload = [
                [s, f"{o}", f"{hi}", f"{lo}", f"{c}", f"{v}", s + MINUTE_MS - 1, f"{c * v}", 10, "0", "0", "0"]
                for s, o, hi, lo, c, v in rows
            ]
        body = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json;charset=UTF-8")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
