"""The FastAPI app: the routes of every area over one ``ApiContext``, behind one gate, and errors as JSON.

``pipeline.api.guard.Guard`` stands in front of every route and WebSocket, including routes added
later: Host and Origin checks, the bearer token, body caps. Every error names the field, the value
and the rule (422), says who may act (401, 403), or says the desk is busy (503).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from pipeline.api.analysis import add_analysis_routes
from pipeline.api.bars import add_bar_routes
from pipeline.api.context import ApiContext
from pipeline.api.guard import Guard
from pipeline.api.health import add_health_routes
from pipeline.api.metrics import add_metrics_routes
from pipeline.api.pretrade import add_pretrade_routes
from pipeline.api.stocks_ws import add_stock_ws_routes
from pipeline.api.trades import ForbiddenUser, add_trade_routes
from pipeline.errors import BadMessageError, TransientError


def _violations(exc: BadMessageError) -> list[dict[str, Any]]:
    return [{"field": v.field, "value": v.value, "rule": v.rule} for v in exc.violations]


def create_app(ctx: ApiContext) -> FastAPI:
    """Return the API over ``ctx`` (its bus, producer, store and default user)."""
    app = FastAPI(title="Trader's desk API", version="1")
    app.add_middleware(Guard, tokens=ctx.tokens, settings=ctx.guard)

    @app.exception_handler(ForbiddenUser)
    async def _forbidden(_: Request, exc: ForbiddenUser) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

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
    add_metrics_routes(app, ctx.db, ctx.bus)
    add_analysis_routes(app, ctx)
    add_pretrade_routes(app, ctx)

    def openapi() -> dict[str, Any]:
        """The description, with the bearer scheme so the docs page's Authorize button takes the token."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
