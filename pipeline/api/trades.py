"""The journal's routes (seed 000's endpoints): trades in, trades, summary and alerts out, live trades.

Routes are thin: validation and publishing are the journal sources' (the same code as the
Journal and Import pages), reads are ``storage.journal``'s. Every error names the field, the
value and the rule. ``WS /ws/trades/{user_id}`` reads the bus with its own consumer group from the
newest offset, so it pushes what happens after the socket opened.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, File, Query, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from pipeline.api.context import ApiContext
from pipeline.errors import BadMessageError, Violation
from pipeline.journal.fills import normalize_symbol
from pipeline.journal.importer import MAX_UPLOAD_BYTES, ImportFileError, import_file
from pipeline.journal.sources import submit_entry
from pipeline.topics import BEHAVIORAL_ALERTS, ENRICHED_TRADES
from storage import journal

log = logging.getLogger(__name__)


def _records(frame: Any) -> list[dict[str, Any]]:
    return orjson.loads(frame.to_json(orient="records")) if len(frame) else []


def add_trade_routes(app: FastAPI, ctx: ApiContext) -> None:
    """Add the journal's routes: trades in (one, or a CSV file), trades, summary and alerts out, live trades."""
    default_user = ctx.user_id

    @app.post("/api/trades", status_code=201)
    async def post_trade(request: Request) -> dict[str, str]:
        """Publish one Trade record (seed 000's fields) to raw-trades; 422 names each bad field."""
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise BadMessageError([Violation("body", None, f"a JSON object ({exc})")]) from None
        if not isinstance(body, dict):
            raise BadMessageError([Violation("body", str(body)[:80], "a JSON object")])
        user = body.get("user_id") or default_user
        if not isinstance(user, str):
            raise BadMessageError([Violation("user_id", user, "a string")])
        given = body.get("source")
        source = given if isinstance(given, str) and given else "api"
        trade_id = await run_in_threadpool(submit_entry, ctx.producer, user, body, source=source)
        return {"trade_id": trade_id}

    @app.post("/api/trades/import")
    async def post_import(
        file: Annotated[UploadFile, File()], user_id: Annotated[str | None, Query()] = None
    ) -> JSONResponse:
        """Import a CSV export; the report names each rejected row, column, value and reason."""
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        try:
            report = await run_in_threadpool(
                import_file, data, user_id=user_id or default_user, producer=ctx.producer, db=ctx.db, source="csv"
            )
        except ImportFileError as exc:
            status = 413 if len(data) > MAX_UPLOAD_BYTES else 422
            return JSONResponse(
                {"detail": str(exc), "needs_mapping": exc.needs_mapping, "header": exc.header}, status_code=status
            )
        return JSONResponse(report.to_json())

    @app.get("/api/trades")
    async def get_trades(
        user_id: str | None = None, symbol: str | None = None, limit: int = Query(500, ge=1, le=100_000)
    ) -> list[dict[str, Any]]:
        """The journal's trades as stored, enriched, newest first."""
        frame = await run_in_threadpool(
            journal.trades, ctx.db, user_id or default_user, symbol=_symbol(symbol), limit=limit
        )
        return _records(frame)

    @app.get("/api/journal/summary")
    async def get_summary(user_id: str | None = None, symbol: str | None = None) -> dict[str, Any]:
        return await run_in_threadpool(journal.journal_summary, ctx.db, user_id or default_user, _symbol(symbol))

    @app.get("/api/alerts")
    async def get_alerts(user_id: str | None = None, limit: int = Query(200, ge=1, le=10_000)) -> list[dict]:
        return await run_in_threadpool(journal.alerts, ctx.db, user_id or default_user, limit)

    @app.websocket("/ws/trades/{user_id}")
    async def ws_trades(socket: WebSocket, user_id: str) -> None:
        """Push this user's enriched trades and alerts as ``{"type", "data"}`` JSON as they happen."""
        await socket.accept()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        stop = threading.Event()
        ready = threading.Event()

        def pump() -> None:
            consumer = ctx.bus.consumer(
                f"ws-{user_id}-{uuid.uuid4().hex[:8]}", [ENRICHED_TRADES, BEHAVIORAL_ALERTS], auto_offset_reset="latest"
            )
            try:
                while not stop.is_set():
                    records = consumer.poll(500, 0.2)
                    ready.set()
                    for r in records:
                        if r.key != user_id.encode() or r.value is None:
                            continue
                        kind = "trade" if r.topic == ENRICHED_TRADES else "alert"
                        loop.call_soon_threadsafe(queue.put_nowait, {"type": kind, "data": orjson.loads(r.value)})
            finally:
                consumer.close()

        thread = threading.Thread(target=pump, name=f"ws:{user_id}", daemon=True)
        thread.start()
        await asyncio.to_thread(ready.wait, 30.0)
        await socket.send_json({"type": "ready", "data": {"user_id": user_id}})
        try:
            while True:
                await socket.send_json(await queue.get())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            stop.set()


def _symbol(symbol: str | None) -> str | None:
    return normalize_symbol(symbol) if symbol else None
