"""``GET /health``: the bus, the database, each feed, Redis when configured, the lag, the market.

A closed market is not an error: a stock feed then reads ``closed`` with "market closed, opens …",
and no stale-data alarm fires. A live feed is ``stale`` when it said nothing for ``STALE_S`` while
its market was open (crypto markets always are; stock ones in NYSE sessions). The answer is 200
with ``status: ok`` or ``degraded`` (a feed stopped or stale (``pipeline.stocks.feeds``), Redis unreachable, a rejected
credential), and 503 with ``status: down`` when the bus or the database does not answer. Feeds and
lag come from what workers publish (``storage.status``), so they are right for stages in other
processes too. Never shows a secret: Redis is described by host and port.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Response
from starlette.concurrency import run_in_threadpool

from pipeline.api.context import ApiContext
from pipeline.stocks.feeds import feed_state, is_feed
from pipeline.stocks.hours import market_hours
from pipeline.topics import STOCK_TRADES_RAW
from storage import status


def check(ctx: ApiContext, now: float | None = None) -> tuple[int, dict[str, Any]]:
    """Return (HTTP status, body) of the health check (blocking: run it on a worker thread)."""
    now = time.time() if now is None else now
    body: dict[str, Any] = {}
    try:
        ctx.bus.describe_topics([STOCK_TRADES_RAW])
        body["bus"] = {"kind": ctx.bus.name, "ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure of the bus is what this check reports
        body["bus"] = {"kind": ctx.bus.name, "ok": False, "error": type(exc).__name__}
    try:
        ctx.db.query("SELECT 1")
        workers = status.stages(ctx.db, now=now)
        body["database"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure of the store is what this check reports
        body["database"] = {"ok": False, "error": type(exc).__name__}
        workers = []
    market = market_hours().status(datetime.fromtimestamp(now, tz=UTC))
    body["market"] = market.to_json()
    body["feeds"] = [feed_state(s, market, now) for s in workers if is_feed(s.name)]
    body["lag"] = {s.name: s.lag for s in workers if s.kind in ("stage", "process")}
    if ctx.fanout is not None:
        body["fast_path"] = {"where": ctx.fanout.describe(), **ctx.fanout.stats().to_json()}
        if ctx.fanout.kind == "redis":
            body["redis"] = {"where": ctx.fanout.describe(), "ok": ctx.fanout.ping()}
    down = not (body["bus"]["ok"] and body["database"]["ok"])
    degraded = any(f["state"] in ("stopped", "stale") for f in body["feeds"]) or not body.get("redis", {}).get(
        "ok", True
    )
    body = {"status": "down" if down else "degraded" if degraded else "ok", **body}
    return (503 if down else 200), body


def add_health_routes(app: FastAPI, ctx: ApiContext) -> None:
    """Add ``GET /health``."""

    @app.get(
        "/health",
        responses={
            200: {"description": "ok or degraded (a feed stopped or stale, Redis unreachable)"},
            503: {"description": "down: the bus or the database does not answer"},
        },
    )
    async def health() -> Response:
        """The bus, the database, each feed's state, Redis when configured, each stage's lag, the market."""
        code, body = await run_in_threadpool(check, ctx)
        return Response(orjson.dumps(body), status_code=code, media_type="application/json")
