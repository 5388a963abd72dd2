"""The bar routes (seed 004's FastAPI ``/bars``): the latest bars of a symbol, a time range, the
latest bar of every symbol. Bars are bars: a crypto symbol (``^[A-Z]{3,6}USDT$``) is served from
the market store's 1-minute bars (``storage.market``; 5Min, 1Hour and 1Day resampled on the UTC
clock as they are read), a stock symbol from ``storage.stocks`` (resampled as they are written,
days in New York time).

Every bad parameter gets a 422 whose ``detail`` names the field, the value and the rule; nothing is
changed by any of these routes. Times in and out: ``start``/``end`` take ISO-8601 (an offset, or UTC
when none) or Unix epoch seconds or milliseconds (told apart by size); each bar carries ``start``
(Unix ms) and ``time`` (ISO-8601, UTC). Reads run on the thread pool, one indexed range scan each;
the answer is encoded with orjson.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Query, Response
from starlette.concurrency import run_in_threadpool

from pipeline.api.context import ApiContext
from pipeline.errors import BadMessageError, Violation
from pipeline.messages import CRYPTO_SYMBOL, STOCK_SYMBOL
from storage import market, stocks

TIMEFRAMES = ("1Min", "5Min", "1Hour", "1Day")
MAX_LIMIT = 100_000
EXAMPLE_BAR = {
    "start": 1764599400000,
    "time": "2025-12-01T14:30:00+00:00",
    "open": 190.1,
    "high": 190.4,
    "low": 189.9,
    "close": 190.2,
    "volume": 12000.0,
    "trade_count": 85,
    "vwap": 190.18,
}


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _symbol(raw: str) -> tuple[str, str]:
    symbol = raw.strip().upper()
    if re.match(CRYPTO_SYMBOL, symbol):
        return symbol, "crypto"
    if re.match(STOCK_SYMBOL, symbol):
        return symbol, "stock"
    raise BadMessageError(
        [Violation("symbol", raw, f"a stock symbol ({STOCK_SYMBOL}) or a crypto one ({CRYPTO_SYMBOL})")]
    )


def _timeframe(raw: str) -> str:
    if raw not in TIMEFRAMES:
        raise BadMessageError([Violation("timeframe", raw, f"one of {', '.join(TIMEFRAMES)}")])
    return raw


def _limit(value: int, maximum: int = MAX_LIMIT) -> int:
    if not 1 <= value <= maximum:
        raise BadMessageError([Violation("limit", value, f"1 <= limit <= {maximum}")])
    return value


def parse_time(name: str, raw: str) -> int:
    """Return ``raw`` (ISO-8601, or epoch seconds or milliseconds) as Unix ms; raise naming ``name``."""
    text = raw.strip()
    rule = "an ISO-8601 time (e.g. 2025-12-01T09:30:00-05:00) or Unix epoch seconds or milliseconds"
    if re.fullmatch(r"\d+(\.\d+)?", text):
        value = float(text)
        ms = value * 1000 if value < 1e11 else value
        if ms > 4_102_444_800_000:  # 2100-01-01: a typo, not a time
            raise BadMessageError([Violation(name, raw, rule)])
        return int(ms)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise BadMessageError([Violation(name, raw, rule)]) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _bar(row: tuple[Any, ...]) -> dict[str, Any]:
    start = int(row[0])
    return {
        "start": start,
        "time": datetime.fromtimestamp(start / 1000, tz=UTC).isoformat(),
        "open": row[1],
        "high": row[2],
        "low": row[3],
        "close": row[4],
        "volume": row[5],
        "trade_count": row[6] if len(row) > 6 else None,
        "vwap": row[7] if len(row) > 7 else None,
    }


def _crypto_latest(ctx: ApiContext, symbol: str, timeframe: str, limit: int) -> list[tuple[Any, ...]]:
    if timeframe == "1Min":
        return [tuple(r)[:6] for r in market.history(ctx.db, symbol, limit)]
    found = market.span(ctx.db, symbol)
    if found is None:
        return []
    size = stocks.TIMEFRAMES[timeframe]
    last = found[1] - found[1] % size
    return list(market.resampled(ctx.db, symbol, size, last - (limit - 1) * size, last + size, limit))


def _crypto_range(ctx: ApiContext, symbol: str, timeframe: str, start: int, end: int, limit: int) -> list[Any]:
    if timeframe == "1Min":
        frame = market.bars(ctx.db, symbol, since_ms=start, limit=MAX_LIMIT + 1)
        rows = [
            r for r in frame[["start", "open", "high", "low", "close", "volume"]].itertuples(index=False) if r[0] < end
        ]
        return [tuple(r) for r in rows[:limit]]
    size = stocks.TIMEFRAMES[timeframe]
    rows = market.resampled(ctx.db, symbol, size, start - start % size, end, MAX_LIMIT + 1)
    return [r for r in rows if r[0] >= start - start % size][:limit]


def add_bar_routes(app: FastAPI, ctx: ApiContext) -> None:
    """Add ``GET /bars/latest``, ``GET /bars/{symbol}`` and ``GET /bars/{symbol}/range``."""
    bars_response: dict[int | str, dict[str, Any]] = {
        200: {"content": {"application/json": {"example": {"bars": [EXAMPLE_BAR]}}}}
    }

    @app.get("/bars/latest", responses=bars_response)
    async def latest_bars(
        timeframe: str = Query("1Min", description="1Min, 5Min, 1Hour or 1Day"),
    ) -> Response:
        """The latest bar of every symbol with bars, stocks and crypto, by symbol."""
        tf = _timeframe(timeframe)

        def read() -> list[dict[str, Any]]:
            out = [{"symbol": r[0], "asset": "stock", **_bar(r[1:])} for r in stocks.latest_bars(ctx.db, tf)]
            for symbol in market.symbols(ctx.db):
                rows = _crypto_latest(ctx, symbol, tf, 1)
                if rows:
                    out.append({"symbol": symbol, "asset": "crypto", **_bar(rows[-1])})
            return sorted(out, key=lambda b: b["symbol"])

        return _json({"timeframe": tf, "bars": await run_in_threadpool(read)})

    @app.get("/bars/{symbol}", responses=bars_response)
    async def get_bars(
        symbol: str,
        limit: int = Query(100, description=f"how many of the latest bars, 1 to {MAX_LIMIT}"),
        timeframe: str = Query("1Min", description="1Min, 5Min, 1Hour or 1Day"),
    ) -> Response:
        """The latest ``limit`` bars of ``symbol``, oldest first (an empty list for a symbol without bars)."""
        sym, asset = _symbol(symbol)
        tf, n = _timeframe(timeframe), _limit(limit)
        if asset == "crypto":
            rows = await run_in_threadpool(_crypto_latest, ctx, sym, tf, n)
        else:
            rows = await run_in_threadpool(stocks.bars, ctx.db, sym, tf, n)
        return _json({"symbol": sym, "asset": asset, "timeframe": tf, "bars": [_bar(r) for r in rows]})

    @app.get("/bars/{symbol}/range", responses=bars_response)
    async def get_bar_range(
        symbol: str,
        start: str = Query(..., description="ISO-8601 (UTC when no offset) or Unix epoch seconds or milliseconds"),
        end: str | None = Query(None, description="as start; now when left out; the range is [start, end)"),
        timeframe: str = Query("1Min", description="1Min, 5Min, 1Hour or 1Day"),
        limit: int = Query(10_000, description=f"at most this many bars, 1 to {MAX_LIMIT}"),
    ) -> Response:
        """The bars of ``symbol`` starting in [start, end), oldest first; ``truncated`` says when
        ``limit`` cut the answer short."""
        sym, asset = _symbol(symbol)
        tf, n = _timeframe(timeframe), _limit(limit)
        lo = parse_time("start", start)
        hi = parse_time("end", end) if end is not None else int(time.time() * 1000) + 1
        if hi <= lo:
            raise BadMessageError([Violation("end", end, f"after start ({start})")])
        if asset == "crypto":
            rows = await run_in_threadpool(_crypto_range, ctx, sym, tf, lo, hi, n + 1)
        else:
            rows = await run_in_threadpool(stocks.bars_range, ctx.db, sym, tf, lo, hi, n + 1)
        return _json(
            {
                "symbol": sym,
                "asset": asset,
                "timeframe": tf,
                "start": lo,
                "end": hi,
                "truncated": len(rows) > n,
                "bars": [_bar(r) for r in rows[:n]],
            }
        )
