"""The FastAPI app: the routes of every area over one ``ApiContext``, and errors as JSON.

Every error names the field, the value and the rule (422), or says the desk is busy (503).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from pipeline.api.analysis import add_analysis_routes
from pipeline.api.bars import add_bar_routes
from pipeline.api.context import ApiContext
from pipeline.api.health import add_health_routes
from pipeline.api.pretrade import add_pretrade_routes
from pipeline.api.stocks_ws import add_stock_ws_routes
from pipeline.api.trades import add_trade_routes
from pipeline.errors import BadMessageError, TransientError


def _violations(exc: BadMessageError) -> list[dict[str, Any]]:
    return [{"field": v.field, "value": v.value, "rule": v.rule} for v in exc.violations]


def create_app(ctx: ApiContext) -> FastAPI:
    """Return the API over ``ctx`` (its bus, producer, store and default user)."""
    app = FastAPI(title="Trader's desk API", version="1")

    @app.exception_handler(BadMessageError)
    async def _bad(_: Request, exc: BadMessageError) -> JSONResponse:
        return JSONResponse({"detail": _violations(exc)}, status_code=422)

    @app.exception_handler(TransientError)
    async def _busy(_: Request, exc: TransientError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    add_trade_routes(app, ctx)
    add_bar_routes(app, ctx)
    add_stock_ws_routes(app, ctx)
    add_health_routes(app, ctx)
    add_analysis_routes(app, ctx)
    add_pretrade_routes(app, ctx)
    return app
