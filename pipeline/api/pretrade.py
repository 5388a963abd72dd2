"""``POST /api/pretrade``: the pre-trade check of a planned trade (``pipeline.journal.pretrade``).

The body is JSON: ``symbol``, ``side`` (BUY or SELL), ``quantity`` (or ``size``), ``stop``, and
optionally ``price`` (default: the last tick) and ``user_id`` (default: the desk's user). The answer
lists every behavioural rule the trade would trip now, the position's R, the models' latest view of
the symbol and whether the paper account would take it (``allowed``). Missing or impossible values
(a size of 0, a stop on the wrong side of the price) get a 422 that names each field, its value and
the rule. The check reads the store on a worker thread; it never publishes anything.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from pipeline.api.context import ApiContext
from pipeline.errors import BadMessageError, Violation
from pipeline.journal.pretrade_service import PretradeSettings, run_check


def add_pretrade_routes(app: FastAPI, ctx: ApiContext) -> None:
    """Add ``POST /api/pretrade``."""
    settings = PretradeSettings(ctx.behaviour, ctx.pretrade_cooldown_min, ctx.models)

    @app.post("/api/pretrade")
    async def post_pretrade(request: Request) -> dict[str, Any]:
        """Check a planned trade against the trader's recent journal; 422 names each bad field."""
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise BadMessageError([Violation("body", None, f"a JSON object ({exc})")]) from None
        if not isinstance(body, dict):
            raise BadMessageError([Violation("body", str(body)[:80], "a JSON object")])
        user = body.get("user_id") or ctx.user_id
        if not isinstance(user, str):
            raise BadMessageError([Violation("user_id", user, "a string")])
        verdict = await run_in_threadpool(run_check, ctx.db, user, body, settings)
        return verdict.to_json()
