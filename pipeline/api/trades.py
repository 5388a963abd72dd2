"""The journal's routes (seed 000's endpoints): trades in, trades, summary and alerts out, live trades.

Routes are thin: validation and publishing are the journal sources' (the same code as the
Journal and Import pages), reads are ``storage.journal``'s. Every error names the field, the
value and the rule. Every route acts for the user of the request's token (``guard.user_of``): a
``user_id`` that names another user is refused (403), never obeyed.

``WS /ws/trades/{user_id}`` reads the bus with its own consumer group from the newest offset, so it
pushes what happens after the socket opened. It watches the socket for the client's close as well
as the bus; either way its reader thread stops, its consumer leaves and its group is deleted, so an
opened-and-closed socket leaves no thread, member or group behind. At most ``max_websockets`` are
open at once; one more is refused at the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import uuid
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, File, Query, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from pipeline.api.context import ApiContext
from pipeline.api.guard import user_of
from pipeline.errors import BadMessageError, PipelineError, Violation
from pipeline.journal.fills import normalize_symbol
from pipeline.journal.importer import MAX_UPLOAD_BYTES, ImportFileError, import_file
from pipeline.journal.sources import submit_entry
from pipeline.topics import BEHAVIORAL_ALERTS, ENRICHED_TRADES
from storage import journal

log = logging.getLogger(__name__)

SOURCE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
SOURCE_RULE = "1-32 lower-case letters, digits or _ . - (what sent the trade, e.g. api or a script's name)"


class ForbiddenUser(PipelineError):
    """A request names a user other than its token's (403)."""


def acting_user(connection: Request | WebSocket, named: object) -> str:
    """The token's user; refuse a request that names anyone else."""
    user = user_of(connection)
    if named is not None and named != user:
        shown = repr(named)[:80] if isinstance(named, str) else type(named).__name__
        raise ForbiddenUser(f"user_id {shown} is not the token's user: a token acts for {user!r} only")
    return user


def _records(frame: Any) -> list[dict[str, Any]]:
    return orjson.loads(frame.to_json(orient="records")) if len(frame) else []


def add_trade_routes(app: FastAPI, ctx: ApiContext) -> None:
    """Add the journal's routes: trades in (one, or a CSV file), trades, summary and alerts out, live trades."""
    sockets = threading.BoundedSemaphore(ctx.max_websockets)

    @app.post("/api/trades", status_code=201)
    async def post_trade(request: Request) -> dict[str, str]:
        """Publish one Trade record (seed 000's fields) to raw-trades; 422 names each bad field."""
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            raise BadMessageError([Violation("body", None, f"a JSON object ({exc})")]) from None
        if not isinstance(body, dict):
            raise BadMessageError([Violation("body", str(body)[:80], "a JSON object")])
        user = acting_user(request, body.get("user_id"))
        given = body.get("source")
        if given is None or given == "":
            source = "api"
        elif isinstance(given, str) and SOURCE.fullmatch(given):
            source = given
        else:
            raise BadMessageError([Violation("source", str(given)[:80], SOURCE_RULE)])
        trade_id = await run_in_threadpool(submit_entry, ctx.producer, user, body, source=source)
        return {"trade_id": trade_id}

    @app.post("/api/trades/import")
    async def post_import(
        request: Request, file: Annotated[UploadFile, File()], user_id: Annotated[str | None, Query()] = None
    ) -> JSONResponse:
        """Import a CSV export; the report names each rejected row, column, value and reason."""
        user = acting_user(request, user_id)
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        try:
            report = await run_in_threadpool(
                import_file, data, user_id=user, producer=ctx.producer, db=ctx.db, source="csv"
            )
        except ImportFileError as exc:
            status = 413 if len(data) > MAX_UPLOAD_BYTES else 422
            return JSONResponse(
                {"detail": str(exc), "needs_mapping": exc.needs_mapping, "header": exc.header}, status_code=status
            )
        return JSONResponse(report.to_json())

    @app.get("/api/trades")
    async def get_trades(
        request: Request,
        user_id: str | None = None,
        symbol: Annotated[str | None, Query(max_length=40)] = None,
        limit: int = Query(500, ge=1, le=100_000),
    ) -> list[dict[str, Any]]:
        """The journal's trades as stored, enriched, newest first."""
        user = acting_user(request, user_id)
        frame = await run_in_threadpool(journal.trades, ctx.db, user, symbol=_symbol(symbol), limit=limit)
        return _records(frame)

    @app.get("/api/journal/summary")
    async def get_summary(
        request: Request, user_id: str | None = None, symbol: Annotated[str | None, Query(max_length=40)] = None
    ) -> dict[str, Any]:
        user = acting_user(request, user_id)
        return await run_in_threadpool(journal.journal_summary, ctx.db, user, _symbol(symbol))

    @app.get("/api/alerts")
    async def get_alerts(
        request: Request, user_id: str | None = None, limit: int = Query(200, ge=1, le=10_000)
    ) -> list[dict]:
        user = acting_user(request, user_id)
        return await run_in_threadpool(journal.alerts, ctx.db, user, limit)

    @app.websocket("/ws/trades/{user_id}")
    async def ws_trades(socket: WebSocket, user_id: str) -> None:
        """Push this user's enriched trades and alerts as ``{"type", "data"}`` JSON as they happen."""
        try:
            user = acting_user(socket, user_id)
        except ForbiddenUser:
            await socket.close(code=1008, reason="a token acts for its own user only")
            return
        if not sockets.acquire(blocking=False):
            await socket.close(code=1013, reason=f"at most {ctx.max_websockets} live sockets; try again later")
            return
        try:
            await _serve_trades(socket, ctx, user)
        finally:
            sockets.release()


async def _serve_trades(socket: WebSocket, ctx: ApiContext, user: str) -> None:
    """Pump the user's records from a reader thread to the socket until either side ends."""
    await socket.accept()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
    stop = threading.Event()
    ready = loop.create_future()
    group = f"ws-{user}-{uuid.uuid4().hex[:12]}"
    key = user.encode()

    def deliver(item: dict[str, Any]) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a client that does not read loses the newest, not the desk
            queue.put_nowait(item)

    def settle(error: Exception | None) -> None:
        if not ready.done():
            if error is None:
                ready.set_result(None)
            else:
                ready.set_exception(error)

    def pump() -> None:
        consumer = None
        try:
            consumer = ctx.bus.consumer(group, [ENRICHED_TRADES, BEHAVIORAL_ALERTS], auto_offset_reset="latest")
            first = True
            while not stop.is_set():
                records = consumer.poll(500, 0.2)
                if first:  # joined and assigned: what is produced from now on reaches this socket
                    first = False
                    loop.call_soon_threadsafe(settle, None)
                for r in records:
                    if r.key != key or r.value is None:
                        continue
                    kind = "trade" if r.topic == ENRICHED_TRADES else "alert"
                    loop.call_soon_threadsafe(deliver, {"type": kind, "data": orjson.loads(r.value)})
        except Exception as exc:  # noqa: BLE001 - the socket is closed; the API goes on
            log.warning("live trades of %s stopped: %s", user, exc)
            failed = PipelineError(f"live trades stopped: {type(exc).__name__}")
            loop.call_soon_threadsafe(settle, failed)
        finally:
            if consumer is not None:
                consumer.close()
            with contextlib.suppress(Exception):
                ctx.bus.delete_groups([group])

    thread = threading.Thread(target=pump, name=f"ws:{user}", daemon=True)
    thread.start()

    async def send() -> None:
        await ready
        await socket.send_json({"type": "ready", "data": {"user_id": user}})
        while True:
            await socket.send_json(await queue.get())

    async def receive() -> None:
        while (await socket.receive())["type"] != "websocket.disconnect":
            pass

    tasks = [asyncio.ensure_future(send()), asyncio.ensure_future(receive())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        stop.set()
        await asyncio.to_thread(thread.join, 10.0)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the client may have gone first
            await socket.close()


def _symbol(symbol: str | None) -> str | None:
    return normalize_symbol(symbol) if symbol else None
