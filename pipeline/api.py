"""The trades API (seed 000's endpoints) over a running pipeline, and the worker that serves it.

Routes are thin: validation and publishing are the journal sources' (the same code as the
Journal and Import pages), reads are ``storage.journal``'s. Every error names the field, the
value and the rule. ``WS /ws/trades/{user_id}`` reads the bus with its own consumer group from the
newest offset, so it pushes what happens after the socket opened.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, File, Query, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from pipeline.errors import BadMessageError, PipelineError, TransientError, Violation
from pipeline.journal.fills import normalize_symbol
from pipeline.journal.importer import MAX_UPLOAD_BYTES, ImportFileError, import_file
from pipeline.journal.sources import submit_entry
from pipeline.runner import Worker
from pipeline.topics import BEHAVIORAL_ALERTS, ENRICHED_TRADES
from storage import journal

if TYPE_CHECKING:
    from pipeline.wiring import Runtime

log = logging.getLogger(__name__)


def _violations(exc: BadMessageError) -> list[dict[str, Any]]:
    return [{"field": v.field, "value": v.value, "rule": v.rule} for v in exc.violations]


def _records(frame: Any) -> list[dict[str, Any]]:
    return orjson.loads(frame.to_json(orient="records")) if len(frame) else []


def create_app(runtime: Runtime) -> FastAPI:
    """Return the API bound to ``runtime`` (its bus producer, database and default user)."""
    app = FastAPI(title="Trader's desk: trades API", version="1")
    default_user = runtime.config.user_id

    @app.exception_handler(BadMessageError)
    async def _bad(_: Request, exc: BadMessageError) -> JSONResponse:
        return JSONResponse({"detail": _violations(exc)}, status_code=422)

    @app.exception_handler(TransientError)
    async def _busy(_: Request, exc: TransientError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

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
        source = body.get("source") if isinstance(body.get("source"), str) and body.get("source") else "api"
        trade_id = await run_in_threadpool(submit_entry, runtime.producer, user, body, source=source)
        return {"trade_id": trade_id}

    @app.post("/api/trades/import")
    async def post_import(file: UploadFile = File(...), user_id: str | None = Query(None)) -> JSONResponse:
        """Import a CSV export; the report names each rejected row, column, value and reason."""
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        try:
            report = await run_in_threadpool(import_file, data, user_id=user_id or default_user,
                                             producer=runtime.producer, db=runtime.db, source="csv")
        except ImportFileError as exc:
            status = 413 if len(data) > MAX_UPLOAD_BYTES else 422
            return JSONResponse({"detail": str(exc), "needs_mapping": exc.needs_mapping, "header": exc.header},
                                status_code=status)
        return JSONResponse(report.to_json())

    @app.get("/api/trades")
    async def get_trades(user_id: str | None = None, symbol: str | None = None,
                         limit: int = Query(500, ge=1, le=100_000)) -> list[dict[str, Any]]:
        """The journal's trades as stored, enriched, newest first."""
        frame = await run_in_threadpool(journal.trades, runtime.db, user_id or default_user,
                                        symbol=_symbol(symbol), limit=limit)
        return _records(frame)

    @app.get("/api/journal/summary")
    async def get_summary(user_id: str | None = None, symbol: str | None = None) -> dict[str, Any]:
        return await run_in_threadpool(journal.journal_summary, runtime.db, user_id or default_user,
                                       _symbol(symbol))

    @app.get("/api/alerts")
    async def get_alerts(user_id: str | None = None, limit: int = Query(200, ge=1, le=10_000)) -> list[dict]:
        return await run_in_threadpool(journal.alerts, runtime.db, user_id or default_user, limit)

    @app.websocket("/ws/trades/{user_id}")
    async def ws_trades(socket: WebSocket, user_id: str) -> None:
        """Push this user's enriched trades and alerts as ``{"type", "data"}`` JSON as they happen."""
        await socket.accept()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        stop = threading.Event()
        ready = threading.Event()

        def pump() -> None:
            consumer = runtime.bus.consumer(f"ws-{user_id}-{uuid.uuid4().hex[:8]}", [ENRICHED_TRADES, BEHAVIORAL_ALERTS],
                                            auto_offset_reset="latest")
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

    return app


def _symbol(symbol: str | None) -> str | None:
    return normalize_symbol(symbol) if symbol else None


class ApiServer(Worker):
    """Serves the API with uvicorn on its own thread (kind "source": it publishes what it gets)."""

    kind = "source"

    def __init__(self, runtime: Runtime, host: str, port: int) -> None:
        super().__init__("api")
        import uvicorn

        self.host, self.port = host, port
        self.server = uvicorn.Server(uvicorn.Config(create_app(runtime), host=host, port=port, log_level="warning",
                                                   lifespan="off", ws="websockets-sansio"))

    def _run(self) -> None:
        try:
            self.server.run()
        except SystemExit as exc:  # uvicorn exits when it cannot bind; say so in health instead
            raise PipelineError(f"the trades API could not listen on {self.host}:{self.port} ({exc})") from None
        if not self._stop.is_set() and not self.server.started:
            raise PipelineError(f"the trades API could not listen on {self.host}:{self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        super().stop(timeout)

    def wait_started(self, timeout: float = 10.0) -> bool:
        """Return True once the server accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.started:
                return True
            if self._thread is not None and not self._thread.is_alive():
                return False
            time.sleep(0.05)
        return False
