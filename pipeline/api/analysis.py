"""The stock analysis routes (seed 003's API Service): a symbol's latest results with their aggregate,
and the stock alerts. Read-only; everything comes from ``storage.analysis`` on the thread pool.

* ``GET /api/analysis/{symbol}``: ``technical`` and ``sentiment`` (the latest result of each, or
  null), ``aggregate`` (the latest), ``state`` (the signal held and whether a risk is on), the
  symbol's newest ``alerts`` (10);
* ``GET /api/stock-alerts?symbol=&limit=&since=``: alerts newest first (``since``: ISO-8601 or
  Unix seconds or milliseconds).

A bad parameter gets a 422 naming the field, the value and the rule.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

import orjson
from fastapi import FastAPI, Query, Response
from starlette.concurrency import run_in_threadpool

from pipeline.api.bars import parse_time
from pipeline.api.context import ApiContext
from pipeline.errors import BadMessageError, Violation
from pipeline.messages import STOCK_SYMBOL, ms_iso
from storage import analysis
from storage.db import Database


def _json(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def _symbol(raw: str) -> str:
    symbol = raw.strip().upper()
    if not re.fullmatch(STOCK_SYMBOL, symbol):
        raise BadMessageError([Violation("symbol", raw, f"a stock symbol ({STOCK_SYMBOL})")])
    return symbol


def _alert(row: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in row.items() if k != "cause"}, "time": ms_iso(int(row["timestamp"]))}


def symbol_analysis(db: Database, symbol: str) -> dict[str, Any]:
    """What ``GET /api/analysis/{symbol}`` and ``python -m pipeline analysis`` show."""
    results = analysis.latest_results(db, symbol)
    aggregates = analysis.aggregates(db, symbol, limit=1)
    state = analysis.alert_state(db.reader().conn, symbol)

    def result(kind: str) -> dict[str, Any] | None:
        found = results.get(kind)
        return None if found is None else {**asdict(found), "time": ms_iso(found.timestamp)}

    aggregate = aggregates[-1] if aggregates else None
    return {
        "symbol": symbol,
        "technical": result("technical"),
        "sentiment": result("sentiment"),
        "aggregate": None if aggregate is None else {**aggregate, "time": ms_iso(int(aggregate["timestamp"]))},
        "state": None if state is None else {"signal": state[0], "risk": state[1]},
        "alerts": [_alert(a) for a in analysis.alerts(db, symbol, limit=10)],
    }


def add_analysis_routes(app: FastAPI, ctx: ApiContext) -> None:
    """Add ``GET /api/analysis/{symbol}`` and ``GET /api/stock-alerts``."""

    @app.get("/api/analysis/{symbol}")
    async def get_analysis(symbol: str) -> Response:
        """The latest technical and sentiment results of ``symbol``, their aggregate and its alerts."""
        return _json(await run_in_threadpool(symbol_analysis, ctx.db, _symbol(symbol)))

    @app.get("/api/stock-alerts")
    async def get_stock_alerts(
        symbol: str | None = Query(None, description="one stock symbol; every symbol when left out"),
        limit: int = Query(100, description="how many of the newest alerts, 1 to 1000"),
        since: str | None = Query(None, description="ISO-8601 or Unix epoch seconds or milliseconds"),
    ) -> Response:
        """Stock alerts (buy_signal, sell_signal, risk_alert), newest first."""
        sym = _symbol(symbol) if symbol else None
        if not 1 <= limit <= 1000:
            raise BadMessageError([Violation("limit", limit, "1 <= limit <= 1000")])
        lo = parse_time("since", since) if since else 0
        rows = await run_in_threadpool(analysis.alerts, ctx.db, sym, limit, lo)
        return _json({"alerts": [_alert(a) for a in rows]})
